# The raw engine: a block device served with O_DIRECT through libaio.
#
# Included by the top-level CMakeLists.txt (in its scope) once the npcore
# library exists and before the nbdplex executable is defined. Adds the
# engine to NP_EXTRA_SOURCES, NP_EXTRA_LIBS and NP_EXTRA_DEFS (NP_HAVE_RAW,
# which makes storage/registry.c list it), and registers the tests (label
# "raw"). Without libaio the engine is left out with a warning.

find_library(NP_AIO_LIBRARY aio)
find_path(NP_AIO_INCLUDE_DIR libaio.h)
if(NOT NP_AIO_LIBRARY OR NOT NP_AIO_INCLUDE_DIR)
	message(WARNING "raw engine left out: libaio not found (install libaio-dev)")
	return()
endif()

set(NP_RAW_SOURCES ${CMAKE_SOURCE_DIR}/storage/raw.c ${CMAKE_SOURCE_DIR}/storage/raw_aio.c)
list(APPEND NP_EXTRA_SOURCES ${NP_RAW_SOURCES})
list(APPEND NP_EXTRA_LIBS ${NP_AIO_LIBRARY})
list(APPEND NP_EXTRA_DEFS NP_HAVE_RAW)

# The unit test must link like the server does: npcore's registry refers to
# every engine compiled in, and engines included after this file add their
# sources later. So the test target is made at the end of the top-level
# directory, from the final lists, with the server's include directories,
# definitions and libraries when the nbdplex target carries them.
function(np_raw_add_tests)
	find_package(Threads REQUIRED)
	find_library(NP_RAW_UV_LIBRARY uv)
	add_executable(test_raw ${CMAKE_SOURCE_DIR}/tests/raw/test_raw.c ${NP_EXTRA_SOURCES})
	target_include_directories(test_raw PRIVATE ${CMAKE_SOURCE_DIR})
	target_compile_definitions(test_raw PRIVATE ${NP_EXTRA_DEFS})
	if(TARGET nbdplex)
		foreach(prop INCLUDE_DIRECTORIES COMPILE_DEFINITIONS COMPILE_OPTIONS)
			get_target_property(val nbdplex ${prop})
			if(val)
				set_property(TARGET test_raw APPEND PROPERTY ${prop} ${val})
			endif()
		endforeach()
		get_target_property(libs nbdplex LINK_LIBRARIES)
	endif()
	if(NOT libs)
		set(libs npcore)
	endif()
	if(NP_RAW_UV_LIBRARY)
		list(APPEND libs ${NP_RAW_UV_LIBRARY})
	endif()
	target_link_libraries(test_raw PRIVATE ${libs} ${NP_EXTRA_LIBS} ${NP_AIO_LIBRARY}
		Threads::Threads)

	add_test(NAME raw_unit
		COMMAND ${CMAKE_SOURCE_DIR}/tests/raw/test_raw.sh $<TARGET_FILE:test_raw>)
	set_tests_properties(raw_unit PROPERTIES LABELS raw SKIP_RETURN_CODE 77 TIMEOUT 600)
	if(TARGET nbdplex)
		add_test(NAME raw_clients
			COMMAND ${CMAKE_SOURCE_DIR}/tests/raw/raw_clients.sh $<TARGET_FILE:nbdplex>)
		set_tests_properties(raw_clients PROPERTIES LABELS raw SKIP_RETURN_CODE 77
			TIMEOUT 600 RUN_SERIAL TRUE)
	endif()
endfunction()

if(BUILD_TESTING OR NOT DEFINED BUILD_TESTING)
	cmake_language(DEFER CALL np_raw_add_tests)
endif()
