# Tests of attnccl as its users consume it: the installed package (find_package and pkg-config),
# the symbols libattnccl.so exports, tools/attnccl-info, the NCCL bootstrap header and the
# Python/PyTorch binding. Included at the end of tests/CMakeLists.txt, after the GoogleTest
# programs (tests/tools, tests/nccl) have been defined by the glob.

# ABI: only attnccl* symbols leave libattnccl.so; versioned SONAME; no NCCL/MPI dependency.
add_test(NAME package.exports
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/package/check_exports.sh $<TARGET_FILE:attnccl> ${PROJECT_VERSION_MAJOR})
set_tests_properties(package.exports PROPERTIES LABELS package TIMEOUT 60)

# Install into a temporary prefix and build + run a C99 consumer with find_package and pkg-config.
add_test(NAME package.install_consumer
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/package/install_consumer.sh ${CMAKE_BINARY_DIR} ${PROJECT_SOURCE_DIR}
                 ${CMAKE_C_COMPILER} ${PROJECT_VERSION})
set_tests_properties(package.install_consumer PROPERTIES LABELS package TIMEOUT 180)

if(TARGET test_attnccl_info)
  target_compile_definitions(test_attnccl_info PRIVATE ATTNCCL_INFO_BIN="$<TARGET_FILE:attnccl-info>"
                             ATTNCCL_README="${PROJECT_SOURCE_DIR}/README.md")
  add_dependencies(test_attnccl_info attnccl-info)
endif()

# attnccl_nccl.h: compiled as strict C99 (not run), and the GPU test links NCCL + cudart like an
# application (the test skips visibly without a GPU).
if(TARGET test_nccl_bootstrap)
  add_library(attnccl_nccl_header_c99 OBJECT nccl/nccl_header_c99.c)
  target_include_directories(attnccl_nccl_header_c99 PRIVATE ${PROJECT_SOURCE_DIR}/include ${NCCL_INCLUDE_DIR})
  target_link_libraries(attnccl_nccl_header_c99 PRIVATE CUDA::cudart)
  set_target_properties(attnccl_nccl_header_c99 PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  target_compile_options(attnccl_nccl_header_c99 PRIVATE -Wall -Wextra -Werror)
  add_dependencies(test_nccl_bootstrap attnccl_nccl_header_c99)
  target_link_libraries(test_nccl_bootstrap PRIVATE ${NCCL_LIBRARY} CUDA::cudart)
  target_include_directories(test_nccl_bootstrap PRIVATE ${NCCL_INCLUDE_DIR})
  # Skips (no GPU; one GPU for the two-rank case) are reported by the entries tests/CMakeLists.txt
  # registers for this program.
endif()

# The PyTorch binding (python/attnccl) under Debian's interpreter, which has python3-torch;
# the test exits 77 (reported by CTest as skipped) when torch cannot be imported.
if(EXISTS /usr/bin/python3)
  add_test(NAME python.test_torch_binding
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python/test_torch_binding.py)
  set_tests_properties(python.test_torch_binding PROPERTIES LABELS python TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "ATTNCCL_LIBRARY=$<TARGET_FILE:attnccl>;PYTHONPATH=${PROJECT_SOURCE_DIR}/python")
else()
  message(STATUS "attnccl: /usr/bin/python3 not found, the PyTorch binding test is not registered")
endif()

# The PyTorch 2 package (python/attnccl: attnccl.torch, attnccl.hf) under the venv that
# tools/quickstart creates (-DATTNCCL_PYTHON=<venv>/bin/python; default: the checkout's .venv when
# it exists, else Debian's python3, where the tests report themselves skipped: exit 77).
set(ATTNCCL_PYTHON "" CACHE FILEPATH "Python with torch 2.x (and transformers) for the python.torch2 tests")
set(_attnccl_py "${ATTNCCL_PYTHON}")
if(NOT _attnccl_py AND EXISTS ${PROJECT_SOURCE_DIR}/.venv/bin/python)
  set(_attnccl_py ${PROJECT_SOURCE_DIR}/.venv/bin/python)
endif()
if(NOT _attnccl_py AND EXISTS /usr/bin/python3)
  set(_attnccl_py /usr/bin/python3)
endif()
if(_attnccl_py)
  foreach(_t attention hf)
    add_test(NAME python.torch2_${_t} COMMAND ${_attnccl_py} ${CMAKE_CURRENT_SOURCE_DIR}/python/test_torch2_${_t}.py)
    # PYTHONPATH as well as the editable install, so a venv without it still tests this checkout.
    set_tests_properties(python.torch2_${_t} PROPERTIES LABELS python TIMEOUT 600 SKIP_RETURN_CODE 77
      ENVIRONMENT "ATTNCCL_LIBRARY=$<TARGET_FILE:attnccl>;PYTHONPATH=${PROJECT_SOURCE_DIR}/python;OMP_NUM_THREADS=1")
  endforeach()
  add_test(NAME python.package COMMAND ${_attnccl_py} ${CMAKE_CURRENT_SOURCE_DIR}/python/test_package.py
           ${PROJECT_SOURCE_DIR}/python $<TARGET_FILE:attnccl>)
  set_tests_properties(python.package PROPERTIES LABELS python TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
