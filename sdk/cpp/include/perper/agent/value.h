// SPDX-License-Identifier: MIT
// Values of the Perper agent SDK: how C++ values travel as google.protobuf.Any.
//
// Provides:
//   perper::Bytes                 a byte string (google.protobuf.BytesValue on the wire)
//   perper::ToAny(value)          packs a value
//   perper::FromAny<T>(any)       unpacks a value, or an INVALID_ARGUMENT naming both types
//   perper::IsNull(any)           true for the null value
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
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

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

}  // namespace value_internal

// True for the null value: an Any with an empty type URL, or a google.protobuf.Value holding
// null_value.
inline bool IsNull(const google::protobuf::Any& any) { return value_internal::IsNull(any); }

// Whether `T` can be packed and unpacked by ToAny and FromAny.
template <typename T>
concept Value = std::same_as<T, bool> || std::integral<T> || std::floating_point<T> ||
    std::same_as<T, std::string> || std::same_as<T, Bytes> ||
    std::derived_from<T, google::protobuf::Message> || value_internal::IsOptional<T>::value;

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

}  // namespace perper
