# The package.find_package_consumer test, run with `cmake -P`: installs the
# gptoss build tree into a fresh prefix, configures the consumer project in
# this folder against that prefix only, builds it with the same generator and
# compiler, and runs it.
#
# Inputs (-D): GPTOSS_BUILD_DIR (the build tree to install), CONSUMER_SOURCE_DIR,
# WORK_DIR (scratch, wiped first), GENERATOR, and optionally MAKE_PROGRAM,
# CXX_COMPILER, CXX_COMPILER_LAUNCHER, BUILD_TYPE, CONFIG (multi-config builds).
cmake_minimum_required(VERSION 3.21)

foreach(var GPTOSS_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${prefix}" "${consumer_build}")

set(config_args "")
if(NOT "${CONFIG}" STREQUAL "")
  set(config_args --config "${CONFIG}")
endif()

# Runs a command, echoing it, and fails the test with `what` when it fails.
function(run_step what)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "[package test] ${what}: ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[package test] ${what} failed (${rc})")
  endif()
endfunction()

# 1. Install into the fresh prefix.
run_step("install" "${CMAKE_COMMAND}" --install "${GPTOSS_BUILD_DIR}" --prefix "${prefix}"
         ${config_args})
# Locate the installed files wherever GNUInstallDirs put them.
set(config_dir "")
foreach(f gptoss/gptoss.hpp gptossConfig.cmake gptossConfigVersion.cmake gptossTargets.cmake)
  file(GLOB_RECURSE hits "${prefix}/*/${f}")
  if(NOT hits)
    message(FATAL_ERROR "[package test] the install in ${prefix} has no ${f}")
  endif()
  if(f STREQUAL "gptossConfig.cmake")
    list(GET hits 0 config_file)
    get_filename_component(config_dir "${config_file}" DIRECTORY)
  endif()
endforeach()

# 2. Configure the consumer against the prefix and nothing else of gptoss.
set(configure_args
  -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" -G "${GENERATOR}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(NOT "${CXX_COMPILER}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(NOT "${CXX_COMPILER_LAUNCHER}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER}")
endif()
if(NOT "${BUILD_TYPE}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
run_step("configure consumer" "${CMAKE_COMMAND}" ${configure_args})

# The package must have come from the prefix, not from a system install.
file(STRINGS "${consumer_build}/CMakeCache.txt" found_dir REGEX "^gptoss_DIR:")
string(REGEX REPLACE "^gptoss_DIR:[A-Z]+=" "" found_dir "${found_dir}")
file(REAL_PATH "${found_dir}" found_dir)
file(REAL_PATH "${config_dir}" expected_dir)
if(NOT found_dir STREQUAL expected_dir)
  message(FATAL_ERROR "[package test] gptoss was found in '${found_dir}', not in '${expected_dir}'")
endif()

# 3. Build and run it.
run_step("build consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" ${config_args})
set(exe "${consumer_build}/consumer")
if(NOT EXISTS "${exe}" AND NOT "${CONFIG}" STREQUAL "")
  set(exe "${consumer_build}/${CONFIG}/consumer")
endif()
run_step("run consumer" "${exe}")
message(STATUS "[package test] passed")
