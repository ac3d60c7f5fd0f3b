# Finds attnccl's dependencies and gathers them in the interface target attnccl_deps.
# Each ATTNCCL_WITH_<X> is AUTO (use when found), ON (required) or OFF; the result is ATTNCCL_HAVE_<X>.
include(CheckLanguage)
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
add_library(attnccl_deps INTERFACE)

macro(attnccl_resolve_option opt found have)
  string(TOUPPER "${${opt}}" _v)
  if(_v STREQUAL "OFF")
    set(${have} OFF)
  elseif(${found})
    set(${have} ON)
  elseif(_v STREQUAL "ON")
    message(FATAL_ERROR "${opt}=ON but the dependency was not found")
  else()
    set(${have} OFF)
  endif()
endmacro()

# hwloc: required (topology, core placement).
pkg_check_modules(HWLOC IMPORTED_TARGET hwloc)
if(HWLOC_FOUND)
  set(ATTNCCL_HAVE_HWLOC ON)
  target_link_libraries(attnccl_deps INTERFACE PkgConfig::HWLOC)
else()
  message(FATAL_ERROR "hwloc not found: apt-get install libhwloc-dev (or run tools/quickstart)")
endif()

# UCX transport.
if(NOT ATTNCCL_WITH_UCX STREQUAL "OFF")
  pkg_check_modules(UCX IMPORTED_TARGET ucx)
endif()
attnccl_resolve_option(ATTNCCL_WITH_UCX UCX_FOUND ATTNCCL_HAVE_UCX)
if(ATTNCCL_HAVE_UCX)
  target_link_libraries(attnccl_deps INTERFACE PkgConfig::UCX)
endif()

# BLAS for the CPU tile micro-kernels (OpenBLAS; see src/attn/cpu/README.md for why).
pkg_check_modules(OPENBLAS IMPORTED_TARGET openblas)
if(OPENBLAS_FOUND)
  set(ATTNCCL_BLAS openblas)
  target_link_libraries(attnccl_deps INTERFACE PkgConfig::OPENBLAS)
else()
  message(FATAL_ERROR "OpenBLAS not found: apt-get install libopenblas-dev (or run tools/quickstart)")
endif()

# oneDNN for the CPU tiles' GEMMs where it beats OpenBLAS (AVX-512 fp32) and for bf16 inputs
# multiplied as bf16 (src/attn/cpu/README.md). AUTO: used when found; without it the tiles run
# every GEMM through OpenBLAS in fp32. Found by header and library rather than by its CMake
# package: Debian's libdnnl-dev 2.6 config requires the OpenCL development files (its GPU
# runtime), which a CPU build has no use for.
if(NOT ATTNCCL_WITH_DNNL STREQUAL "OFF")
  find_path(DNNL_INCLUDE_DIR dnnl.hpp PATH_SUFFIXES oneapi/dnnl)
  find_library(DNNL_LIBRARY NAMES dnnl)
endif()
set(ATTNCCL_DNNL_FOUND OFF)
if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY)
  set(ATTNCCL_DNNL_FOUND ON)
endif()
attnccl_resolve_option(ATTNCCL_WITH_DNNL ATTNCCL_DNNL_FOUND ATTNCCL_HAVE_DNNL)
if(ATTNCCL_HAVE_DNNL)
  target_include_directories(attnccl_deps INTERFACE ${DNNL_INCLUDE_DIR})
  target_link_libraries(attnccl_deps INTERFACE ${DNNL_LIBRARY})
endif()

# MPI (bootstrap from an MPI_Comm, perf tools under mpirun, Open MPI comparison benches).
if(NOT ATTNCCL_WITH_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS C QUIET)
endif()
attnccl_resolve_option(ATTNCCL_WITH_MPI MPI_C_FOUND ATTNCCL_HAVE_MPI)

# NCCL (rendezvous only, loaded at run time: only its header is needed to build).
if(NOT ATTNCCL_WITH_NCCL STREQUAL "OFF")
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include ${CUDAToolkit_INCLUDE_DIRS})
endif()
# The library itself never links NCCL; libnccl is looked up only for the GPU test of the
# header-inline attncclCommInitNccl (tests/nccl), which links it like an application would.
if(NCCL_INCLUDE_DIR)
  find_library(NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib64 ${CUDAToolkit_LIBRARY_DIR})
endif()
if(NCCL_INCLUDE_DIR)
  set(NCCL_FOUND ON)
else()
  set(NCCL_FOUND OFF)
endif()
attnccl_resolve_option(ATTNCCL_WITH_NCCL NCCL_FOUND ATTNCCL_HAVE_NCCL)

# CUDA.
if(NOT ATTNCCL_WITH_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
endif()
if(CMAKE_CUDA_COMPILER)
  set(CUDA_FOUND ON)
else()
  set(CUDA_FOUND OFF)
endif()
attnccl_resolve_option(ATTNCCL_WITH_CUDA CUDA_FOUND ATTNCCL_HAVE_CUDA)
if(ATTNCCL_HAVE_CUDA)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  target_link_libraries(attnccl_deps INTERFACE CUDA::cudart)
endif()
if(ATTNCCL_HAVE_NCCL)
  target_include_directories(attnccl_deps INTERFACE ${NCCL_INCLUDE_DIR})
endif()
