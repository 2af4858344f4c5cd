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
