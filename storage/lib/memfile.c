/* Finding files whose storage is memory. */
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "storage/lib/memfile.h"

bool np_fd_in_memory(int fd)
{
	struct statfs sf;
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fstatfs(fd, &sf) == 0 &&
	       (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
}
