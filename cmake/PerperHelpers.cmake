# SPDX-License-Identifier: MIT
# perper_cc_test(NAME name SRCS a.cc ... DEPS lib ... LABELS unit|integration|process|slow)
# One GoogleTest executable; its tests are discovered into ctest with the given labels.
function(perper_cc_test)
  cmake_parse_arguments(T "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SRCS})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
  # gtest_discover_tests takes one label only (its arguments lose a list's escaping, and the
  # rest of the list would be read as other properties), so a test with several gets the first
  # there and all of them from a file that ctest reads after the discovered tests (which it
  # lists in ${T_NAME}_TESTS).
  list(GET T_LABELS 0 first_label)
  gtest_discover_tests(${T_NAME}
    PROPERTIES LABELS "${first_label}"
      ENVIRONMENT "PERPER_FABRIC_BINARY=$<TARGET_FILE:perper-fabric>"
    DISCOVERY_TIMEOUT 60)
  list(LENGTH T_LABELS label_count)
  if(label_count GREATER 1)
    set(labels_file ${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}_labels.cmake)
    file(WRITE ${labels_file} "if(DEFINED ${T_NAME}_TESTS)\n"
      "  set_tests_properties(\${${T_NAME}_TESTS} PROPERTIES LABELS \"${T_LABELS}\")\n"
      "endif()\n")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${labels_file})
  endif()
endfunction()

# Stops the configuration when a helper was called with an argument it does not know, or
# without one it needs (the arguments parsed as <prefix>_...; the required ones named after).
function(perper_check_arguments helper prefix)
  if(${prefix}_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "${helper}(${${prefix}_NAME}): unknown arguments"
      " ${${prefix}_UNPARSED_ARGUMENTS}")
  endif()
  foreach(required ${ARGN})
    if(NOT ${prefix}_${required})
      message(FATAL_ERROR "${helper}(${${prefix}_NAME}): ${required} is missing")
    endif()
  endforeach()
endfunction()

# perper_cc_library(NAME name SRCS a.cc ... [HDRS a.h ...] [DEPS lib ...] [PUBLIC_DEPS lib ...]
#                   [INCLUDES dir ...])
# A static library of the files listed (never a glob: a new file is added here, in the change
# that a review reads). HDRS are not compiled; listing them keeps the library's files in one
# place (and in IDEs). DEPS are linked privately; PUBLIC_DEPS also reach whatever links the
# library, for a library whose headers include theirs. Its users include "perper/<dir>/x.h"
# from src/, or from the INCLUDES given instead. Anything else (a definition, a private include
# folder) follows the call as target_...(name ...).
function(perper_cc_library)
  cmake_parse_arguments(L "" "NAME" "SRCS;HDRS;DEPS;PUBLIC_DEPS;INCLUDES" ${ARGN})
  perper_check_arguments(perper_cc_library L NAME SRCS)
  if(NOT L_INCLUDES)
    set(L_INCLUDES $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/src>)
  endif()
  add_library(${L_NAME} STATIC ${L_SRCS} ${L_HDRS})
  target_include_directories(${L_NAME} PUBLIC ${L_INCLUDES})
  target_link_libraries(${L_NAME} PUBLIC ${L_PUBLIC_DEPS} PRIVATE ${L_DEPS})
endfunction()

# perper_proto_library(NAME name PROTOS dir/x.proto ... [PROTO_ROOT root] [GRPC]
#                      [PYTHON_OUT dir])
# A static library of the C++ code protoc generates for PROTOS, paths below PROTO_ROOT (the
# project's proto/ unless given; imports are found there too), into <current binary dir>/gen:
# its users include "dir/x.pb.h". GRPC adds the services (grpc_cpp_plugin, "dir/x.grpc.pb.h").
# PYTHON_OUT adds the target <name>_python, which writes the Python modules below PYTHON_OUT
# (dir/x_pb2.py, with GRPC dir/x_pb2_grpc.py, and an empty dir/__init__.py); their paths are its
# property PERPER_PYTHON_FILES (for install()). It is a target of its own so that the Python
# modules need no C++ build.
function(perper_proto_library)
  cmake_parse_arguments(P "GRPC" "NAME;PROTO_ROOT;PYTHON_OUT" "PROTOS" ${ARGN})
  perper_check_arguments(perper_proto_library P NAME PROTOS)
  if(NOT P_PROTO_ROOT)
    set(P_PROTO_ROOT ${PROJECT_SOURCE_DIR}/proto)
  endif()
  set(gen ${CMAKE_CURRENT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${gen})
  set(cpp_args --cpp_out=${gen})
  set(cpp_tools protobuf::protoc)
  set(python_args --python_out=${P_PYTHON_OUT})
  set(python_tools protobuf::protoc)
  if(P_GRPC)
    list(APPEND cpp_args --grpc_out=${gen}
      --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>)
    list(APPEND cpp_tools gRPC::grpc_cpp_plugin)
    list(APPEND python_args --grpc_python_out=${P_PYTHON_OUT}
      --plugin=protoc-gen-grpc_python=$<TARGET_FILE:gRPC::grpc_python_plugin>)
    list(APPEND python_tools gRPC::grpc_python_plugin)
  endif()

  set(srcs)
  set(protos)
  set(python_modules)
  set(python_inits)
  foreach(path ${P_PROTOS})
    set(proto ${P_PROTO_ROOT}/${path})
    if(NOT EXISTS ${proto})
      message(FATAL_ERROR "perper_proto_library(${P_NAME}): ${proto} does not exist")
    endif()
    list(APPEND protos ${proto})
    string(REGEX REPLACE "\\.proto$" "" base ${path})
    set(out ${gen}/${base}.pb.cc ${gen}/${base}.pb.h)
    if(P_GRPC)
      list(APPEND out ${gen}/${base}.grpc.pb.cc ${gen}/${base}.grpc.pb.h)
    endif()
    add_custom_command(OUTPUT ${out}
      COMMAND protobuf::protoc --proto_path=${P_PROTO_ROOT} ${cpp_args} ${proto}
      DEPENDS ${proto} ${cpp_tools}
      COMMENT "protoc ${path}"
      VERBATIM)
    list(APPEND srcs ${out})

    list(APPEND python_modules ${P_PYTHON_OUT}/${base}_pb2.py)
    if(P_GRPC)
      list(APPEND python_modules ${P_PYTHON_OUT}/${base}_pb2_grpc.py)
    endif()
    get_filename_component(dir ${base} DIRECTORY)
    if(dir)
      list(APPEND python_inits ${P_PYTHON_OUT}/${dir}/__init__.py)
    endif()
  endforeach()

  add_library(${P_NAME} STATIC ${srcs})
  target_include_directories(${P_NAME} SYSTEM PUBLIC $<BUILD_INTERFACE:${gen}>
    $<INSTALL_INTERFACE:include>)
  if(P_GRPC)
    target_link_libraries(${P_NAME} PUBLIC gRPC::grpc++)
  endif()
  target_link_libraries(${P_NAME} PUBLIC protobuf::libprotobuf Threads::Threads)

  if(P_PYTHON_OUT)
    # One protoc run for all: the modules of a package are written together.
    list(REMOVE_DUPLICATES python_inits)
    set(touch_inits)
    foreach(init ${python_inits})
      list(APPEND touch_inits COMMAND ${CMAKE_COMMAND} -E touch ${init})
    endforeach()
    add_custom_command(OUTPUT ${python_inits} ${python_modules}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${P_PYTHON_OUT}
      COMMAND protobuf::protoc --proto_path=${P_PROTO_ROOT} ${python_args} ${protos}
      ${touch_inits}
      DEPENDS ${protos} ${python_tools}
      COMMENT "protoc (python) ${P_NAME}"
      VERBATIM)
    add_custom_target(${P_NAME}_python DEPENDS ${python_inits} ${python_modules})
    set_target_properties(${P_NAME}_python PROPERTIES
      PERPER_PYTHON_FILES "${python_inits};${python_modules}")
  endif()
endfunction()
