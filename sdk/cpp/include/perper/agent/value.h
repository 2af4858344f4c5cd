// SPDX-License-Identifier: MIT
// Values of the Perper agent SDK: how C++ values travel as google.protobuf.Any.
//
// Provides:
//   perper::Bytes                 a byte string (google.protobuf.BytesValue on the wire)
//   perper::ToAny(value)          packs a value
//   perper::FromAny<T>(any)       unpacks a value, or an INVALID_ARGUMENT naming both types
//   perper::IsNull(any)           true for the null value
//   perper::TryToAny(value)       as ToAny, an error instead of aborting (structured values)
//   perper::ToValue(value)        a google.protobuf.Value (structured values; see below)
//   perper::FromValue<T>(value)   reads a google.protobuf.Value
//
// The table (shared by every Perper SDK, so agents in different languages can call each other):
//
//   C++ type                      wire type                          also read from
//   bool                          google.protobuf.BoolValue
//   int8/16/32 (signed)           google.protobuf.Int32Value
//   int64_t (long, long long)     google.protobuf.Int64Value         Int32Value, UInt32Value
//   uint8/16/32 (unsigned)        google.protobuf.UInt32Value
//   uint64_t                      google.protobuf.UInt64Value        UInt32Value
//   float                         google.protobuf.FloatValue
//   double                        google.protobuf.DoubleValue        FloatValue, Int32Value,
//                                                                    UInt32Value
//   std::string (const char*)     google.protobuf.StringValue
//   perper::Bytes                 google.protobuf.BytesValue
//   std::optional<T>              nullopt = the empty Any; else T    google.protobuf.Value null
//   protobuf message M            M itself (this includes the perper.grpc2.model messages:
//                                 PerperInstance, PerperStream, ...)
//   google.protobuf.Any           passed through unchanged
//   std::map<std::string, V>      google.protobuf.Struct             Value holding a struct
//   std::vector<V>                google.protobuf.ListValue          Value holding a list
//
// Structured values (what a Python dict or list travels as). Inside a Struct or ListValue, V is:
//   bool <-> bool_value; std::string <-> string_value; double, float <-> number_value;
//   integers <-> number_value, written only when |n| <= 2^53 (a double holds no more exactly:
//   a 64-bit integer never silently passes through one), read only from an integral number
//   in the type's range; std::nullopt, std::monostate, an empty std::optional <-> null_value;
//   std::map<std::string, V'> and std::vector<V'> nest; google::protobuf::Value, Struct and
//   ListValue are taken as they are. A Struct is serialized deterministically (fields in key
//   order, as the Python SDK does), so equal maps are equal bytes. Read a Struct of mixed values as
//   std::map<std::string, google::protobuf::Value> and each entry with FromValue<T>.
// An integer beyond 2^53 is INVALID_ARGUMENT naming its path ("a.items[2]") from TryToAny,
// ToValue and the SDK's operations (call, results, state, stream writes); ToAny, which cannot
// fail, aborts the process with that message instead.
//
// Example:
//
//   google::protobuf::Any any = perper::ToAny(int32_t{7});
//   absl::StatusOr<int64_t> n = perper::FromAny<int64_t>(any);      // 7: a widening
//   absl::StatusOr<std::string> s = perper::FromAny<std::string>(any);
//   // INVALID_ARGUMENT: "cannot read google.protobuf.Int32Value as std::string"
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <google/protobuf/any.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/wrappers.pb.h>

namespace perper {

// A byte string, packed as google.protobuf.BytesValue (std::string itself is text: StringValue).
//
//   perper::Bytes blob{std::string("\x00\x01", 2)};
//   auto any = perper::ToAny(blob);
struct Bytes {
  std::string data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};

namespace value_internal {

// The protobuf type name of an Any ("google.protobuf.Int32Value"), or "null".
std::string TypeNameOf(const google::protobuf::Any& any);
// INVALID_ARGUMENT "cannot read <wire type> as <cpp type>".
absl::Status Mismatch(const google::protobuf::Any& any, std::string_view cpp_type);
bool IsNull(const google::protobuf::Any& any);

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <typename M>
bool UnpackAs(const google::protobuf::Any& any, M* out) {
  return any.Is<M>() && any.UnpackTo(out);
}

template <typename T>
struct IsStringMap : std::false_type {};
template <typename V>
struct IsStringMap<std::map<std::string, V>> : std::true_type {};
template <typename T>
struct IsVector : std::false_type {};
template <typename V>
struct IsVector<std::vector<V>> : std::true_type {};

// Whether T can be an element of a Struct or ListValue.
template <typename T>
struct IsStructElement
    : std::bool_constant<
          std::integral<T> || std::floating_point<T> || std::same_as<T, std::string> ||
          std::same_as<T, std::nullopt_t> || std::same_as<T, std::monostate> ||
          std::same_as<T, google::protobuf::Value> || std::same_as<T, google::protobuf::Struct> ||
          std::same_as<T, google::protobuf::ListValue>> {};
template <typename V>
struct IsStructElement<std::optional<V>> : IsStructElement<V> {};
template <typename V>
struct IsStructElement<std::map<std::string, V>> : IsStructElement<V> {};
template <typename V>
struct IsStructElement<std::vector<V>> : IsStructElement<V> {};

// A structured value at the top: a map or a vector of struct elements.
template <typename T>
inline constexpr bool kIsStructured =
    (IsStringMap<T>::value || IsVector<T>::value) && IsStructElement<T>::value;

// Paths of elements in error messages: items[2].name.
std::string KeyPath(std::string_view parent, std::string_view key);
std::string IndexPath(std::string_view parent, size_t index);
// Sets number_value to `n`, or INVALID_ARGUMENT naming `path` when |n| > 2^53.
absl::Status SetInteger(int64_t n, std::string_view path, google::protobuf::Value* out);
absl::Status SetUnsigned(uint64_t n, std::string_view path, google::protobuf::Value* out);
// The number of `value` when it is integral and within [min, end), else INVALID_ARGUMENT.
absl::StatusOr<double> IntegralNumber(const google::protobuf::Value& value, std::string_view path,
                                      double min, double end, std::string_view cpp_type);
// INVALID_ARGUMENT "cannot read <kind> at <path> as <cpp type>".
absl::Status KindMismatch(const google::protobuf::Value& value, std::string_view path,
                          std::string_view cpp_type);
// Aborts with `status` (ToAny of a structured value that cannot be packed).
[[noreturn]] void PackFailed(const absl::Status& status);
// Packs `message` serialized deterministically (map fields in key order, as the Python SDK
// does), so equal structured values are equal bytes: usable as keys and in compare_and_set.
google::protobuf::Any PackDeterministic(const google::protobuf::Message& message);

template <typename T>
absl::Status ToValueAt(const T& value, std::string_view path, google::protobuf::Value* out) {
  using D = std::decay_t<T>;
  if constexpr (std::is_same_v<D, google::protobuf::Value>) {
    *out = value;
  } else if constexpr (std::is_same_v<D, google::protobuf::Struct>) {
    *out->mutable_struct_value() = value;
  } else if constexpr (std::is_same_v<D, google::protobuf::ListValue>) {
    *out->mutable_list_value() = value;
  } else if constexpr (std::is_same_v<D, bool>) {
    out->set_bool_value(value);
  } else if constexpr (std::is_integral_v<D> && std::is_signed_v<D>) {
    return SetInteger(static_cast<int64_t>(value), path, out);
  } else if constexpr (std::is_integral_v<D>) {
    return SetUnsigned(static_cast<uint64_t>(value), path, out);
  } else if constexpr (std::is_floating_point_v<D>) {
    out->set_number_value(static_cast<double>(value));
  } else if constexpr (std::is_same_v<D, std::string> || std::is_same_v<D, std::string_view> ||
                       std::is_same_v<D, const char*> || std::is_same_v<D, char*>) {
    out->set_string_value(std::string(value));
  } else if constexpr (std::is_same_v<D, std::nullopt_t> || std::is_same_v<D, std::monostate>) {
    out->set_null_value(google::protobuf::NULL_VALUE);
  } else if constexpr (IsOptional<D>::value) {
    if (!value.has_value()) {
      out->set_null_value(google::protobuf::NULL_VALUE);
      return absl::OkStatus();
    }
    return ToValueAt(*value, path, out);
  } else if constexpr (IsStringMap<D>::value) {
    auto* fields = out->mutable_struct_value()->mutable_fields();
    for (const auto& [key, element] : value) {
      absl::Status status = ToValueAt(element, KeyPath(path, key), &(*fields)[key]);
      if (!status.ok()) {
        return status;
      }
    }
  } else {
    static_assert(IsVector<D>::value && IsStructElement<D>::value,
                  "perper::ToValue: no google.protobuf.Value for this type (see value.h)");
    auto* list = out->mutable_list_value();
    size_t index = 0;
    for (const typename D::value_type& element : value) {
      absl::Status status = ToValueAt(element, IndexPath(path, index++), list->add_values());
      if (!status.ok()) {
        return status;
      }
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> FromValueAt(const google::protobuf::Value& value, std::string_view path) {
  using google::protobuf::Value;
  if constexpr (std::is_same_v<T, Value>) {
    return value;
  } else if constexpr (IsOptional<T>::value) {
    if (value.kind_case() == Value::kNullValue) {
      return T(std::nullopt);
    }
    auto inner = FromValueAt<typename T::value_type>(value, path);
    if (!inner.ok()) {
      return inner.status();
    }
    return T(*std::move(inner));
  } else if constexpr (std::is_same_v<T, std::nullopt_t> || std::is_same_v<T, std::monostate>) {
    if (value.kind_case() == Value::kNullValue) {
      if constexpr (std::is_same_v<T, std::nullopt_t>) {
        return std::nullopt;
      } else {
        return std::monostate();
      }
    }
    return KindMismatch(value, path, "null");
  } else if constexpr (std::is_same_v<T, bool>) {
    if (value.kind_case() == Value::kBoolValue) {
      return value.bool_value();
    }
    return KindMismatch(value, path, "bool");
  } else if constexpr (std::is_integral_v<T>) {
    // [min, max + 1) as doubles, both exact: max + 1 is a power of two (a 64-bit max rounds
    // up to it).
    constexpr double kMin = static_cast<double>(std::numeric_limits<T>::min());
    constexpr double kEnd = sizeof(T) < 8 ? static_cast<double>(std::numeric_limits<T>::max()) + 1.0
                                          : static_cast<double>(std::numeric_limits<T>::max());
    auto number = IntegralNumber(value, path, kMin, kEnd,
                                 std::is_signed_v<T> ? "a signed integer" : "an unsigned integer");
    if (!number.ok()) {
      return number.status();
    }
    return static_cast<T>(*number);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (value.kind_case() == Value::kNumberValue) {
      return static_cast<T>(value.number_value());
    }
    return KindMismatch(value, path, "a floating-point number");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (value.kind_case() == Value::kStringValue) {
      return value.string_value();
    }
    return KindMismatch(value, path, "std::string");
  } else if constexpr (std::is_same_v<T, google::protobuf::Struct>) {
    if (value.kind_case() == Value::kStructValue) {
      return value.struct_value();
    }
    return KindMismatch(value, path, "google.protobuf.Struct");
  } else if constexpr (std::is_same_v<T, google::protobuf::ListValue>) {
    if (value.kind_case() == Value::kListValue) {
      return value.list_value();
    }
    return KindMismatch(value, path, "google.protobuf.ListValue");
  } else if constexpr (IsStringMap<T>::value) {
    if (value.kind_case() != Value::kStructValue) {
      return KindMismatch(value, path, "std::map (a struct)");
    }
    T out;
    for (const auto& [key, element] : value.struct_value().fields()) {
      auto read = FromValueAt<typename T::mapped_type>(element, KeyPath(path, key));
      if (!read.ok()) {
        return read.status();
      }
      out.emplace(key, *std::move(read));
    }
    return out;
  } else {
    static_assert(IsVector<T>::value && IsStructElement<T>::value,
                  "perper::FromValue: no reading of google.protobuf.Value as this type");
    if (value.kind_case() != Value::kListValue) {
      return KindMismatch(value, path, "std::vector (a list)");
    }
    T out;
    out.reserve(value.list_value().values_size());
    size_t index = 0;
    for (const Value& element : value.list_value().values()) {
      auto read = FromValueAt<typename T::value_type>(element, IndexPath(path, index++));
      if (!read.ok()) {
        return read.status();
      }
      out.push_back(*std::move(read));
    }
    return out;
  }
}

}  // namespace value_internal

// `value` (a bool, number, string, null, map or vector as in the file comment) as a
// google.protobuf.Value; an integer beyond 2^53 is INVALID_ARGUMENT naming its path.
template <typename T>
absl::StatusOr<google::protobuf::Value> ToValue(const T& value) {
  google::protobuf::Value out;
  absl::Status status = value_internal::ToValueAt(value, "", &out);
  if (!status.ok()) {
    return status;
  }
  return out;
}

// Reads a google.protobuf.Value as T (a struct element type); a mismatch, a non-integral
// number read as an integer, or one outside the integer type is INVALID_ARGUMENT.
//
//   absl::StatusOr<int64_t> total = perper::FromValue<int64_t>(fields.at("total"));
template <typename T>
absl::StatusOr<T> FromValue(const google::protobuf::Value& value) {
  return value_internal::FromValueAt<T>(value, "");
}

// True for the null value: an Any with an empty type URL, or a google.protobuf.Value holding
// null_value.
inline bool IsNull(const google::protobuf::Any& any) { return value_internal::IsNull(any); }

// Whether `T` can be packed and unpacked by ToAny and FromAny.
template <typename T>
concept Value = std::same_as<T, bool> || std::integral<T> || std::floating_point<T> ||
    std::same_as<T, std::string> || std::same_as<T, Bytes> ||
    std::derived_from<T, google::protobuf::Message> || value_internal::IsOptional<T>::value ||
    value_internal::kIsStructured<T>;

template <typename T>
google::protobuf::Any ToAny(const T& value);

// Packs `value` as ToAny does; a structured value holding an integer beyond 2^53 is
// INVALID_ARGUMENT naming its path instead.
template <typename T>
absl::StatusOr<google::protobuf::Any> TryToAny(const T& value) {
  using D = std::decay_t<T>;
  if constexpr (value_internal::kIsStructured<D>) {
    auto packed = ToValue(value);
    if (!packed.ok()) {
      return packed.status();
    }
    if constexpr (value_internal::IsStringMap<D>::value) {
      return value_internal::PackDeterministic(packed->struct_value());
    } else {
      return value_internal::PackDeterministic(packed->list_value());
    }
  } else if constexpr (value_internal::IsOptional<D>::value) {
    if (!value.has_value()) {
      return google::protobuf::Any();
    }
    return TryToAny(*value);
  } else {
    return ToAny(value);
  }
}

// Packs `value` as the table in the file comment says.
template <typename T>
google::protobuf::Any ToAny(const T& value) {
  using D = std::decay_t<T>;
  google::protobuf::Any any;
  if constexpr (std::is_same_v<D, google::protobuf::Any>) {
    any = value;
  } else if constexpr (std::is_same_v<D, bool>) {
    google::protobuf::BoolValue v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_integral_v<D> && std::is_signed_v<D> && sizeof(D) <= 4) {
    google::protobuf::Int32Value v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_integral_v<D> && std::is_signed_v<D>) {
    google::protobuf::Int64Value v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_integral_v<D> && sizeof(D) <= 4) {
    google::protobuf::UInt32Value v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_integral_v<D>) {
    google::protobuf::UInt64Value v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_same_v<D, float>) {
    google::protobuf::FloatValue v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_same_v<D, double>) {
    google::protobuf::DoubleValue v;
    v.set_value(value);
    any.PackFrom(v);
  } else if constexpr (std::is_same_v<D, std::string> || std::is_same_v<D, std::string_view> ||
                       std::is_same_v<D, const char*> || std::is_same_v<D, char*>) {
    google::protobuf::StringValue v;
    v.set_value(std::string(value));
    any.PackFrom(v);
  } else if constexpr (std::is_same_v<D, Bytes>) {
    google::protobuf::BytesValue v;
    v.set_value(value.data);
    any.PackFrom(v);
  } else if constexpr (value_internal::IsOptional<D>::value) {
    if (value.has_value()) {
      any = ToAny(*value);
    }
  } else if constexpr (std::is_same_v<D, std::nullopt_t>) {
    // The empty Any is null.
  } else if constexpr (value_internal::kIsStructured<D>) {
    absl::StatusOr<google::protobuf::Any> packed = TryToAny(value);
    if (!packed.ok()) {
      value_internal::PackFailed(packed.status());
    }
    any = *std::move(packed);
  } else {
    static_assert(std::is_base_of_v<google::protobuf::Message, D>,
                  "perper::ToAny: no packing for this type (see perper/agent/value.h)");
    any.PackFrom(value);
  }
  return any;
}

// Packs a string literal as google.protobuf.StringValue.
template <std::size_t N>
google::protobuf::Any ToAny(const char (&value)[N]) {
  return ToAny(std::string(value));
}

// Unpacks `any` as `T`, allowing the widenings in the table; a mismatch is INVALID_ARGUMENT
// naming both types, and null read into a non-optional type is INVALID_ARGUMENT too.
template <typename T>
absl::StatusOr<T> FromAny(const google::protobuf::Any& any) {
  using namespace google::protobuf;  // NOLINT: the wrapper types
  using value_internal::UnpackAs;
  if constexpr (std::is_same_v<T, Any>) {
    return any;
  } else if constexpr (value_internal::IsOptional<T>::value) {
    if (IsNull(any)) {
      return T(std::nullopt);
    }
    auto inner = FromAny<typename T::value_type>(any);
    if (!inner.ok()) {
      return inner.status();
    }
    return T(*std::move(inner));
  } else if constexpr (std::is_same_v<T, bool>) {
    if (BoolValue v; UnpackAs(any, &v)) {
      return v.value();
    }
    return value_internal::Mismatch(any, "bool");
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T> && sizeof(T) <= 4) {
    if (Int32Value v; UnpackAs(any, &v)) {
      if constexpr (sizeof(T) < 4) {
        if (v.value() != static_cast<T>(v.value())) {
          return absl::OutOfRangeError("Int32Value " + std::to_string(v.value()) +
                                       " does not fit the requested integer type");
        }
      }
      return static_cast<T>(v.value());
    }
    return value_internal::Mismatch(any, "int32_t");
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    if (Int64Value v; UnpackAs(any, &v)) {
      return static_cast<T>(v.value());
    }
    if (Int32Value v; UnpackAs(any, &v)) {
      return static_cast<T>(v.value());
    }
    if (UInt32Value v; UnpackAs(any, &v)) {
      return static_cast<T>(v.value());
    }
    return value_internal::Mismatch(any, "int64_t");
  } else if constexpr (std::is_integral_v<T> && sizeof(T) <= 4) {
    if (UInt32Value v; UnpackAs(any, &v)) {
      if constexpr (sizeof(T) < 4) {
        if (v.value() != static_cast<T>(v.value())) {
          return absl::OutOfRangeError("UInt32Value " + std::to_string(v.value()) +
                                       " does not fit the requested integer type");
        }
      }
      return static_cast<T>(v.value());
    }
    return value_internal::Mismatch(any, "uint32_t");
  } else if constexpr (std::is_integral_v<T>) {
    if (UInt64Value v; UnpackAs(any, &v)) {
      return static_cast<T>(v.value());
    }
    if (UInt32Value v; UnpackAs(any, &v)) {
      return static_cast<T>(v.value());
    }
    return value_internal::Mismatch(any, "uint64_t");
  } else if constexpr (std::is_same_v<T, float>) {
    if (FloatValue v; UnpackAs(any, &v)) {
      return v.value();
    }
    return value_internal::Mismatch(any, "float");
  } else if constexpr (std::is_same_v<T, double>) {
    if (DoubleValue v; UnpackAs(any, &v)) {
      return v.value();
    }
    if (FloatValue v; UnpackAs(any, &v)) {
      return static_cast<double>(v.value());
    }
    if (Int32Value v; UnpackAs(any, &v)) {
      return static_cast<double>(v.value());
    }
    if (UInt32Value v; UnpackAs(any, &v)) {
      return static_cast<double>(v.value());
    }
    return value_internal::Mismatch(any, "double");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (StringValue v; UnpackAs(any, &v)) {
      return std::move(*v.mutable_value());
    }
    return value_internal::Mismatch(any, "std::string");
  } else if constexpr (std::is_same_v<T, Bytes>) {
    if (BytesValue v; UnpackAs(any, &v)) {
      return Bytes{std::move(*v.mutable_value())};
    }
    return value_internal::Mismatch(any, "perper::Bytes");
  } else if constexpr (value_internal::kIsStructured<T>) {
    constexpr bool kMap = value_internal::IsStringMap<T>::value;
    google::protobuf::Value value;
    if (google::protobuf::Struct s; kMap && UnpackAs(any, &s)) {
      *value.mutable_struct_value() = std::move(s);
    } else if (ListValue l; !kMap && UnpackAs(any, &l)) {
      *value.mutable_list_value() = std::move(l);
    } else if (!UnpackAs(any, &value) ||
               value.kind_case() != (kMap ? google::protobuf::Value::kStructValue
                                          : google::protobuf::Value::kListValue)) {
      return value_internal::Mismatch(any, kMap ? "std::map (google.protobuf.Struct)"
                                                : "std::vector (google.protobuf.ListValue)");
    }
    return value_internal::FromValueAt<T>(value, "");
  } else {
    static_assert(std::is_base_of_v<Message, T>,
                  "perper::FromAny: no unpacking for this type (see perper/agent/value.h)");
    T message;
    if (UnpackAs(any, &message)) {
      return message;
    }
    return value_internal::Mismatch(any, T::descriptor()->full_name());
  }
}

namespace internal {

// Packs each value (TryToAny); the first that cannot be packed is the error. The SDK's
// operations pack their values with this, so a bad structured value fails the operation.
template <typename... Args>
absl::StatusOr<std::vector<google::protobuf::Any>> PackAll(const Args&... args) {
  std::vector<google::protobuf::Any> out;
  out.reserve(sizeof...(Args));
  absl::Status status;
  [[maybe_unused]] auto one = [&](const auto& value) {
    if (!status.ok()) {
      return;
    }
    absl::StatusOr<google::protobuf::Any> packed = TryToAny(value);
    if (packed.ok()) {
      out.push_back(*std::move(packed));
    } else {
      status = packed.status();
    }
  };
  (one(args), ...);
  if (!status.ok()) {
    return status;
  }
  return out;
}

}  // namespace internal

}  // namespace perper
