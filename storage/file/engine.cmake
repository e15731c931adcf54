# The file engine: a sparse file or a block device through the page cache.
np_add_engine(NAME file SOURCES ${CMAKE_CURRENT_LIST_DIR}/file.c)
