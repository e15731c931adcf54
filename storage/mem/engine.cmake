# The mem engine: an export in memory, for tests.
np_add_engine(NAME mem SOURCES ${CMAKE_CURRENT_LIST_DIR}/mem.c)
