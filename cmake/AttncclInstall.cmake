# Installation and packaging: headers, libattnccl.so (versioned SONAME, only attncclXxx symbols
# exported), the CMake package (find_package(attnccl) -> attnccl::attnccl, with a version file),
# attnccl.pc for pkg-config, the command-line tools in bin/ and the perf tools in
# libexec/attnccl/ (their names, e.g. sendrecv_perf and alltoall_perf, are nccl-tests' names too,
# so they stay out of bin/).
include(CMakePackageConfigHelpers)

set(ATTNCCL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/attnccl)
set(ATTNCCL_PERF_DIR ${CMAKE_INSTALL_LIBEXECDIR}/attnccl)

install(FILES include/attnccl.h include/attnccl_mpi.h include/attnccl_nccl.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Installed binaries keep the non-system directories they were linked against in their RUNPATH
# (e.g. Debian's openblas-pthread directory), so they load the same libraries as in the build tree.
set_target_properties(attnccl PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS attnccl EXPORT attncclTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT attncclTargets NAMESPACE attnccl:: FILE attncclTargets.cmake DESTINATION ${ATTNCCL_CMAKE_DIR})

configure_package_config_file(cmake/attncclConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/attncclConfig.cmake
                              INSTALL_DESTINATION ${ATTNCCL_CMAKE_DIR})
# SONAME and package compatibility follow the same rule: the major version.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/attncclConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/attncclConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/attncclConfigVersion.cmake
        DESTINATION ${ATTNCCL_CMAKE_DIR})

# pkg-config: the prefix is found relative to the .pc file, so an install tree can be moved (and
# `cmake --install --prefix` works without reconfiguring).
file(RELATIVE_PATH ATTNCCL_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" ATTNCCL_PC_TO_PREFIX "${ATTNCCL_PC_TO_PREFIX}")
file(RELATIVE_PATH ATTNCCL_PC_LIBDIR ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_LIBDIR})
file(RELATIVE_PATH ATTNCCL_PC_INCLUDEDIR ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_INCLUDEDIR})
configure_file(cmake/attnccl.pc.in ${CMAKE_CURRENT_BINARY_DIR}/attnccl.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/attnccl.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Every executable of tools/ and perf/, whoever adds it later.
function(attnccl_install_executables dir destination)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t ${targets})
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "EXECUTABLE")
      set_target_properties(${t} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
      install(TARGETS ${t} RUNTIME DESTINATION ${destination})
    endif()
  endforeach()
endfunction()
attnccl_install_executables(${CMAKE_CURRENT_SOURCE_DIR}/tools ${CMAKE_INSTALL_BINDIR})
if(ATTNCCL_BUILD_PERF)
  attnccl_install_executables(${CMAKE_CURRENT_SOURCE_DIR}/perf ${ATTNCCL_PERF_DIR})
endif()
