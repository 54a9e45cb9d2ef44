/* libvirt's XML, read and written with libxml2 (lvxml.c): the domain XML
 * (its disks, its DAC label, its guest agent channel), the XML of a
 * running backup job, and the checkpoint and backup requests rpfs sends.
 * Outside input (libvirt's answers) is only ever read through libxml2's
 * parser and XPath; requests are built as trees, so every value is
 * escaped.  Knows nothing of rpfs's objects (tests/fuzz/fuzz_lvxml.c). */
#ifndef RPFS_LVXML_H
#define RPFS_LVXML_H

#include <stdbool.h>
#include <stddef.h>

struct lv_disk {
  char *target;                 /* <target dev=...>: the disk id ("vda") */
  char *path;                   /* <source file=...> or dev, NULL if none */
  char *skip;                   /* why rpfs cannot track it, or NULL */
  bool writable;                /* not <readonly/>, a disk (not a cdrom) */
};

struct lv_domxml {
  struct lv_disk *disks;        /* in the XML's order */
  size_t ndisks;
  bool agent;                   /* a channel org.qemu.guest_agent.0 */
  char *dac_label;              /* live XML: <seclabel model='dac'><label>,
                                   "+UID:+GID" or "USER:GROUP"; else NULL */
};

/* Parse a domain XML.  0, or -1 with *err. */
int rp_lvxml_domain (const char *xml, size_t len, struct lv_domxml *out,
                     char **err);
void rp_lvxml_domain_free (struct lv_domxml *d);

/* A running backup job (virDomainBackupGetXMLDesc). */
struct lv_backup_disk {
  char *name;                   /* the disk target */
  char *exportname;             /* NBD export name */
  char *exportbitmap;           /* its dirty bitmap ("backup-vda"), or NULL */
};
struct lv_backupxml {
  bool pull;                    /* mode='pull' */
  char *incremental;            /* the base checkpoint, or NULL */
  char *socket;                 /* <server transport='unix' socket=...> */
  struct lv_backup_disk *disks; /* those with backup='yes' */
  size_t ndisks;
};
int rp_lvxml_backup (const char *xml, size_t len, struct lv_backupxml *out,
                     char **err);
void rp_lvxml_backup_free (struct lv_backupxml *b);

/* Requests (caller frees).  DISKS: the targets rpfs tracks; SCRATCH: the
 * backup job's scratch image of each (libvirt creates and labels them);
 * OTHERS: the domain's other writable disks, left out explicitly. */
char *rp_lvxml_checkpoint (const char *name, const char *description,
                           char *const *disks, char *const *others);
/* A checkpoint to redefine (import, or one made while the domain is shut
 * off): its bitmap on DISKS is NAME; OTHERS (may be NULL) have none. */
char *rp_lvxml_checkpoint_redefine (const char *name,
                                    const char *description,
                                    long long created, char *const *disks,
                                    char *const *others);
char *rp_lvxml_backup_pull (const char *incremental, const char *socket,
                            char *const *disks, char *const *scratch,
                            char *const *others);

#endif
