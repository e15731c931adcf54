/* `nbdplex volume import/export` built without libnbd: NBD URIs are refused
 * with a message that says how to get them. */
#include <errno.h>

#include "util/err.h"
#include "tools/volume_copy.h"

int vc_nbd_open(struct vc_ep *ep, const char *uri, bool writable, char **err)
{
	(void)ep;
	(void)writable;
	return np_errmsg(err, -ENOTSUP,
			 "%s: this nbdplex was built without libnbd (install libnbd-dev and "
			 "rebuild) and cannot copy over NBD",
			 uri);
}
