# SPDX-License-Identifier: MIT
# perper_cc_test(NAME name SRCS a.cc ... DEPS lib ... LABELS unit|integration|process|slow)
# One GoogleTest executable; its tests are discovered into ctest with the given labels.
function(perper_cc_test)
  cmake_parse_arguments(T "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SRCS})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
  gtest_discover_tests(${T_NAME}
    PROPERTIES LABELS "${T_LABELS}" ENVIRONMENT "PERPER_FABRIC_BINARY=$<TARGET_FILE:perper-fabric>"
    DISCOVERY_TIMEOUT 60)
endfunction()
