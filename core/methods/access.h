/* Who may do what: the pure rules behind access.c, apart so that the unit
 * tests (tests/unit/check_access.c) can check them without a mount.
 * docs/reference.md, "Who may do what". */
#ifndef RPFS_ACCESS_H
#define RPFS_ACCESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "rpfs.h"

/* Is WHO an operator of a system whose definition says OWNER and GROUP:
 * root, the user rpfs itself runs as (SELF), OWNER, or a member of GROUP
 * (primary or supplementary)? */
bool rp_is_operator (uid_t owner, gid_t group, uid_t self,
                     const struct rp_caller *who);

/* What a file owned by FUID:FGID with permission bits MODE gives WHO, as
 * the kernel decides it without ACLs: root everything; the owner class,
 * else the group class, else the other class (never falling through to a
 * wider class).  WANT is a mask of R_OK and W_OK. */
bool rp_mode_allows (uid_t fuid, gid_t fgid, mode_t mode,
                     const struct rp_caller *who, int want);

#endif
