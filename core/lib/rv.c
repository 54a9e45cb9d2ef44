/* CIM method return values: their errno and name (interface.md section 6).
 * One table, so the mapping cannot drift between the two lookups. */
#include <errno.h>
#include <stddef.h>

#include "rpfs.h"

static const struct {
  int rv;
  int err;
  const char *name;
} rv_table[] = {
  { RV_OK, 0, "Completed with no error" },
  { RV_JOB_STARTED, 0, "Method parameters checked, job started" },
  { RV_FAILED, EIO, "Failed" },
  { RV_ACCESS_DENIED, EACCES, "Access denied" },
  { RV_NOT_SUPPORTED, EOPNOTSUPP, "Not supported" },
  { RV_STATUS_UNKNOWN, EPROTO, "Status is unknown" },
  { RV_TIMEOUT, ETIMEDOUT, "Timeout" },
  { RV_INVALID_PARAMETER, EINVAL, "Invalid parameter" },
  { RV_IN_USE, EBUSY, "System is in use" },
  { RV_INVALID_STATE, EPERM, "Invalid state for this operation" },
  { RV_BAD_TYPE, EINVAL, "Incorrect data type" },
  { RV_NOT_AVAILABLE, ENODEV, "System is not available" },
  { RV_NO_MEMORY, ENOMEM, "Out of memory" },
};

static int
rv_index (int rv)
{
  for (size_t i = 0; i < sizeof rv_table / sizeof rv_table[0]; i++)
    if (rv_table[i].rv == rv)
      return (int) i;
  return -1;
}

int
rp_rv_errno (int rv)
{
  int i = rv_index (rv);
  return i >= 0 ? rv_table[i].err : EIO;
}

const char *
rp_rv_name (int rv)
{
  int i = rv_index (rv);
  return i >= 0 ? rv_table[i].name : "Unknown return value";
}
