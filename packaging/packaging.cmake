# Installation and the Debian package.
#
# Included at the end of the top-level CMakeLists.txt. `cmake --install`
# puts, under the prefix:
#   bin/nbdplex
#   lib/systemd/system/nbdplex.service      (ExecStart names PREFIX/bin/nbdplex)
#   lib/systemd/system/nbdplex.socket       (socket activation of that service)
#   share/man/man1/nbdplex.1.gz, share/man/man5/nbdplex.conf.5.gz
#   share/doc/nbdplex/nbdplex.conf.example
#   src/nbdplex-VERSION/                    kmod/'s sources and dkms.conf
#   SYSCONFDIR/nbdplex/nbdplex.conf         (/etc when the prefix is /usr;
#                                            an existing one is kept)
# `cpack -G DEB` in the build directory makes nbdplex_VERSION-1_ARCH.deb for
# the prefix /usr, with /etc/nbdplex/nbdplex.conf as a conffile.
# packaging/test_package.sh (CTest label "package") checks that package.

include(GNUInstallDirs)
set(NP_PKG_SRC ${CMAKE_SOURCE_DIR}/packaging)
set(NP_PKG_BIN ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${NP_PKG_BIN})

set(NP_UNITDIR "lib/systemd/system" CACHE STRING
    "where the systemd unit goes, relative to the install prefix")

# ---- the server binary
install(TARGETS nbdplex RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# ---- man pages, gzipped as Debian wants them
set(NP_MAN_PAGES nbdplex.1 nbdplex.conf.5)
find_program(NP_GZIP gzip)
set(NP_MAN_OUT)
foreach(page ${NP_MAN_PAGES})
  string(REGEX MATCH "[0-9]$" sec ${page})
  # The .TH line names the project's version.
  file(READ ${NP_PKG_SRC}/${page} NP_MAN_TEXT)
  string(REGEX REPLACE "(\\.TH [^\n]*)\"nbdplex [^\"]*\"" "\\1\"nbdplex ${PROJECT_VERSION}\""
         NP_MAN_TEXT "${NP_MAN_TEXT}")
  file(WRITE ${NP_PKG_BIN}/${page} "${NP_MAN_TEXT}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${NP_PKG_SRC}/${page})
  if(NP_GZIP)
    add_custom_command(
      OUTPUT ${NP_PKG_BIN}/${page}.gz
      COMMAND ${NP_GZIP} -9 -n -c ${NP_PKG_BIN}/${page} > ${NP_PKG_BIN}/${page}.gz
      DEPENDS ${NP_PKG_BIN}/${page}
      COMMENT "Compressing ${page}")
    list(APPEND NP_MAN_OUT ${NP_PKG_BIN}/${page}.gz)
    install(FILES ${NP_PKG_BIN}/${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${sec})
  else()
    install(FILES ${NP_PKG_BIN}/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${sec})
  endif()
endforeach()
if(NP_MAN_OUT)
  add_custom_target(np_man ALL DEPENDS ${NP_MAN_OUT})
endif()

# ---- example configuration
install(FILES ${NP_PKG_SRC}/nbdplex.conf.example DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- DKMS: the module's sources and dkms.conf with this version
# Everything Kbuild reads: the Makefile (Kbuild) and the C sources and
# headers; the test checks that each object the Makefile names is there.
file(GLOB NP_DKMS_FILES CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/kmod/Makefile ${CMAKE_SOURCE_DIR}/kmod/Kbuild
     ${CMAKE_SOURCE_DIR}/kmod/*.c ${CMAKE_SOURCE_DIR}/kmod/*.h)
# (not what an in-tree module build leaves behind)
list(FILTER NP_DKMS_FILES EXCLUDE REGEX "\\.mod\\.c$")
install(FILES ${NP_DKMS_FILES} DESTINATION src/${PROJECT_NAME}-${PROJECT_VERSION})
file(READ ${CMAKE_SOURCE_DIR}/kmod/dkms.conf NP_DKMS_CONF)
string(REGEX REPLACE "PACKAGE_VERSION=\"[^\"]*\"" "PACKAGE_VERSION=\"${PROJECT_VERSION}\""
       NP_DKMS_CONF "${NP_DKMS_CONF}")
file(GENERATE OUTPUT ${NP_PKG_BIN}/dkms.conf CONTENT "${NP_DKMS_CONF}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kmod/dkms.conf)
install(FILES ${NP_PKG_BIN}/dkms.conf DESTINATION src/${PROJECT_NAME}-${PROJECT_VERSION})

# ---- the systemd unit and the configuration file. Both depend on the prefix
# in force at install time (CPack installs with the prefix /usr), so they are
# written by install code rather than configured here.
# The unit is Type=notify: the server sends READY=1 through libsystemd. A
# build without libsystemd cannot, so its unit is Type=exec instead.
if(SYSTEMD_FOUND)
  set(NP_UNIT_TYPE_FIX "")
else()
  message(WARNING "packaging: no libsystemd (install libsystemd-dev): the server cannot "
          "notify systemd, so nbdplex.service is installed with Type=exec")
  set(NP_UNIT_TYPE_FIX "
  string(REPLACE \"Type=notify\\n\" \"Type=exec\\n\" _unit \"\${_unit}\")
  string(REPLACE \"NotifyAccess=main\\n\" \"\" _unit \"\${_unit}\")")
endif()
install(CODE "
  set(_prefix \"\${CMAKE_INSTALL_PREFIX}\")
  set(_unit_src \"${NP_PKG_SRC}/nbdplex.service\")
  file(READ \"\${_unit_src}\" _unit)${NP_UNIT_TYPE_FIX}
  string(REPLACE \"/usr/bin/nbdplex\" \"\${_prefix}/${CMAKE_INSTALL_BINDIR}/nbdplex\" _unit \"\${_unit}\")
  if(_prefix STREQUAL \"/usr\")
    set(_etc \"/etc\")
  else()
    set(_etc \"\${_prefix}/etc\")
  endif()
  string(REPLACE \"/etc/nbdplex/\" \"\${_etc}/nbdplex/\" _unit \"\${_unit}\")
  set(_unitdir \"\$ENV{DESTDIR}\${_prefix}/${NP_UNITDIR}\")
  file(MAKE_DIRECTORY \"\${_unitdir}\")
  message(STATUS \"Installing: \${_unitdir}/nbdplex.service\")
  file(WRITE \"\${_unitdir}/nbdplex.service\" \"\${_unit}\")
  file(CHMOD \"\${_unitdir}/nbdplex.service\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  set(_conf \"\$ENV{DESTDIR}\${_etc}/nbdplex/nbdplex.conf\")
  if(EXISTS \"\${_conf}\")
    message(STATUS \"Keeping: \${_conf}\")
  else()
    message(STATUS \"Installing: \${_conf}\")
    file(MAKE_DIRECTORY \"\$ENV{DESTDIR}\${_etc}/nbdplex\")
    file(COPY_FILE \"${NP_PKG_SRC}/nbdplex.conf.example\" \"\${_conf}\")
    file(CHMOD \"\${_conf}\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
")

# The socket unit names no installed path: copied as it is.
install(FILES ${NP_PKG_SRC}/nbdplex.socket DESTINATION ${NP_UNITDIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# ---- CPack: the Debian package
set(CPACK_PACKAGE_NAME ${PROJECT_NAME})
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "nbdplex")
set(CPACK_PACKAGE_CONTACT "nbdplex maintainers <maintainers@users.noreply.r-seed-67f5f848.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "NBD server on libuv with multi-path kernel client")
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_PACKAGE_NAME ${PROJECT_NAME})
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# CPack puts the summary on the Description line and indents this text
# under it; an empty line becomes the paragraph separator " .".
set(CPACK_PACKAGE_DESCRIPTION "nbdplex serves block devices over the standard NBD protocol, so every NBD
client works with it (nbd-client, qemu-img, libnbd's nbdinfo and nbdcopy,
fio). Storage engines: sparse files, raw block devices through kernel AIO
with O_DIRECT, and RocksDB-backed thin volumes with snapshots and clones.

The package also ships the sources of nbdplex.ko for DKMS: a blk-mq client
driver that spreads one disk's requests over several TCP channels, one per
NIC path, and fails over without I/O errors (nbdplex attach).")
find_program(NP_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(NP_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  message(STATUS "packaging: dpkg-shlibdeps not found (install dpkg-dev); Depends listed by hand")
  # Debian 12's names for what this build links.
  set(NP_DEPENDS "libc6" "libuv1" "libinih1")
  # FOUND_VARIABLE:PACKAGE for the optional libraries
  foreach(pair GNUTLS_FOUND:libgnutls30 MHD_FOUND:libmicrohttpd12 SYSTEMD_FOUND:libsystemd0
               JEMALLOC_FOUND:libjemalloc2 NP_ROCKSDB_LIB:librocksdb7.8
               LIBNBD_FOUND:libnbd0)
    string(REPLACE ":" ";" pair "${pair}")
    list(GET pair 0 found)
    list(GET pair 1 pkg)
    if(${found})
      list(APPEND NP_DEPENDS ${pkg})
    endif()
  endforeach()
  string(REPLACE ";" ", " CPACK_DEBIAN_PACKAGE_DEPENDS "${NP_DEPENDS}")
endif()
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "dkms, linux-headers-amd64, libnbd-bin")
foreach(script postinst prerm)
  configure_file(${NP_PKG_SRC}/debian/${script}.in ${NP_PKG_BIN}/debian/${script} @ONLY)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${NP_PKG_SRC}/debian/conffiles
    ${NP_PKG_BIN}/debian/postinst
    ${NP_PKG_BIN}/debian/prerm
    ${NP_PKG_SRC}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

# ---- the test: builds the package in a scratch folder and checks it
add_test(NAME package COMMAND bash ${NP_PKG_SRC}/test_package.sh)
set_tests_properties(package PROPERTIES LABELS package TIMEOUT 900
  ENVIRONMENT "NBDPLEX=$<TARGET_FILE:nbdplex>;NP_SRC=${CMAKE_SOURCE_DIR};NP_BUILD=${CMAKE_BINARY_DIR};PATH=/usr/bin:/bin:/usr/sbin:/sbin:$ENV{PATH}")
