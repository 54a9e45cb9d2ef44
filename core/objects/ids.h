/* User and group ids from the names a definition gives (owner, group). */
#ifndef RPFS_IDS_H
#define RPFS_IDS_H

#include <stdbool.h>
#include <sys/types.h>

/* S is a whole decimal id below (uid_t) -1 (which means "no change" to
 * chown and so is never a real id): true with *ID. */
bool rp_id_parse (const char *s, unsigned long *id);

/* Look NAME up in the user or group database (NSS).  0 with *ID; 1 when
 * there is no such name; -1 when the lookup itself failed. */
int rp_user_id (const char *name, uid_t *id);
int rp_group_id (const char *name, gid_t *id);

#endif
