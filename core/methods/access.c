/* Who may do what (issue 10, docs/reference.md "Who may do what").
 *
 * The rules live here and nowhere else; calls.c, refpoint.c, job.c and
 * diskio.c ask before they act, and the frontend asks the same functions
 * to refuse at open(2) and to show the rules in ls -l.  rpfs enforces them
 * itself: it is mounted without default_permissions, so the kernel checks
 * no mode for it.
 *
 * - Operators of a system: root, the user rpfs runs as (it could do all of
 *   this without rpfs), the definition's owner and members of its group.
 *   Only they call methods, mkdir / rmdir reference points, write settings
 *   and read or write disks.
 * - A disk (current or point-in-time) gives an operator at most what its
 *   image file's owner, group and mode give that user.
 * - A job is controlled (cancelled, its paths and descriptions read) by its
 *   submitter, an operator of its system, or root. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "caller.h"
#include "internal.h"

bool
rp_is_operator (uid_t owner, gid_t group, uid_t self,
                const struct rp_caller *who)
{
  return who->uid == 0 || who->uid == self || who->uid == owner
    || rp_caller_in_group (who, group);
}

bool
rp_mode_allows (uid_t fuid, gid_t fgid, mode_t mode,
                const struct rp_caller *who, int want)
{
  mode_t bits;

  if (who->uid == 0)
    return true;
  if (who->uid == fuid)
    bits = (mode >> 6) & 7;
  else if (rp_caller_in_group (who, fgid))
    bits = (mode >> 3) & 7;
  else
    bits = mode & 7;
  if ((want & R_OK) && !(bits & 4))
    return false;
  if ((want & W_OK) && !(bits & 2))
    return false;
  return true;
}

bool
rp_system_may_operate (struct rp_system *sys, const struct rp_caller *who)
{
  return who != NULL
    && rp_is_operator (sys->conf->owner, sys->conf->group, geteuid (), who);
}

void
rp_system_owner (struct rp_system *sys, uid_t *uid, gid_t *gid)
{
  *uid = sys->conf->owner;
  *gid = sys->conf->group;
}

int
rp_disk_owner (struct rp_system *sys, const char *id, uid_t *uid, gid_t *gid,
               mode_t *mode)
{
  struct stat st;
  int i = rp_disk_index (sys, id);

  if (i < 0)
    return -ENOENT;
  /* The image itself, not a symlink's target's name: stat follows, as
   * QEMU does when it opens the image. */
  if (stat (sys->disks[i].path, &st) != 0)
    return -errno;
  *uid = st.st_uid;
  *gid = st.st_gid;
  *mode = st.st_mode & 07777;
  return 0;
}

int
rp_disk_access (struct rp_system *sys, const char *id,
                const struct rp_caller *who, int want)
{
  uid_t uid;
  gid_t gid;
  mode_t mode;

  if (!rp_system_may_operate (sys, who))
    return RV_ACCESS_DENIED;
  if (who->uid == 0)
    return RV_OK;
  /* Asked at every open, so a chmod of the image counts at once. */
  if (rp_disk_owner (sys, id, &uid, &gid, &mode) != 0)
    return RV_ACCESS_DENIED;
  return rp_mode_allows (uid, gid, mode, who, want) ? RV_OK
    : RV_ACCESS_DENIED;
}

bool
rp_job_may_control (struct rp_job *job, const struct rp_caller *who)
{
  if (who == NULL)
    return false;
  if (who->uid == 0 || who->uid == job->submitter)
    return true;
  return job->sys != NULL && rp_system_may_operate (job->sys, who);
}

void
rp_job_owner (struct rp_job *job, uid_t *uid, gid_t *gid)
{
  *uid = job->submitter;
  *gid = job->sys ? job->sys->conf->group : 0;
}
