/* libvirt's XML through libxml2 (lvxml.h).  Reading: libxml2's parser with
 * no network, no entity expansion and no DTD loading, then XPath; writing:
 * a tree serialised by libxml2, which escapes every value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "lvxml.h"
#include "util.h"

#define XML_MAX (16 << 20)

static xmlDocPtr
parse (const char *xml, size_t len, char **err)
{
  if (len > XML_MAX) {
    *err = rp_strdup ("the XML is larger than 16 MiB");
    return NULL;
  }
  xmlDocPtr doc = xmlReadMemory (xml, (int) len, "libvirt.xml", NULL,
                                 XML_PARSE_NONET | XML_PARSE_NOERROR
                                 | XML_PARSE_NOWARNING);
  if (!doc) {
    const xmlError *e = xmlGetLastError ();
    *err = rp_asprintf ("libvirt sent XML that does not parse: %s",
                        e && e->message ? e->message : "unknown error");
    if (*err)
      (*err)[strcspn (*err, "\n")] = 0;
  }
  return doc;
}

/* Nodes matching EXPR under CTX's node (caller frees with
 * xmlXPathFreeObject); NULL when nothing matches. */
static xmlXPathObjectPtr
find (xmlXPathContextPtr ctx, xmlNodePtr at, const char *expr)
{
  ctx->node = at;
  xmlXPathObjectPtr o = xmlXPathEvalExpression ((const xmlChar *) expr, ctx);
  if (o && (!o->nodesetval || o->nodesetval->nodeNr == 0)) {
    xmlXPathFreeObject (o);
    o = NULL;
  }
  return o;
}

/* The string value of the first node EXPR matches under AT, malloc'd, or
 * NULL. */
static char *
str (xmlXPathContextPtr ctx, xmlNodePtr at, const char *expr)
{
  xmlXPathObjectPtr o = find (ctx, at, expr);
  if (!o)
    return NULL;
  xmlChar *v = xmlNodeGetContent (o->nodesetval->nodeTab[0]);
  xmlXPathFreeObject (o);
  char *r = v ? rp_strdup ((const char *) v) : NULL;
  xmlFree (v);
  return r;
}

static bool
has (xmlXPathContextPtr ctx, xmlNodePtr at, const char *expr)
{
  xmlXPathObjectPtr o = find (ctx, at, expr);
  xmlXPathFreeObject (o);
  return o != NULL;
}

static bool
eq (const char *a, const char *b)
{
  return a && b && !strcmp (a, b);
}

/* Whether rpfs can track DISK (a <disk> element), else why not. */
static void
judge_disk (xmlXPathContextPtr ctx, xmlNodePtr n, struct lv_disk *d)
{
  CLEANUP_FREE char *type = str (ctx, n, "@type");
  CLEANUP_FREE char *device = str (ctx, n, "@device");
  CLEANUP_FREE char *fmt = str (ctx, n, "driver/@type");
  d->target = str (ctx, n, "target/@dev");
  d->path = str (ctx, n, "source/@file");
  if (!d->path)
    d->path = str (ctx, n, "source/@dev");
  bool ro = has (ctx, n, "readonly");
  d->writable = !ro && (!device || eq (device, "disk"));
  if (device && !eq (device, "disk"))
    d->skip = rp_asprintf ("a %s", device);
  else if (type && !eq (type, "file") && !eq (type, "block"))
    d->skip = rp_asprintf ("a %s disk (only file and block disks can hold "
                           "persistent bitmaps)", type);
  else if (!eq (fmt, "qcow2"))
    d->skip = rp_asprintf ("a %s image (change tracking needs qcow2)",
                           fmt ? fmt : "raw");
  else if (ro)
    d->skip = rp_strdup ("read-only");
  else if (!d->path)
    d->skip = rp_strdup ("without a source");
  if (!d->target)
    d->skip = d->skip ? d->skip : rp_strdup ("without a target name");
}

int
rp_lvxml_domain (const char *xml, size_t len, struct lv_domxml *out,
                 char **err)
{
  memset (out, 0, sizeof *out);
  xmlDocPtr doc = parse (xml, len, err);
  if (!doc)
    return -1;
  xmlXPathContextPtr ctx = xmlXPathNewContext (doc);
  int r = -1;
  if (!ctx || !has (ctx, xmlDocGetRootElement (doc), "/domain")) {
    *err = rp_strdup ("the XML is not a libvirt domain (no <domain>)");
    goto out;
  }
  xmlXPathObjectPtr o = find (ctx, NULL, "/domain/devices/disk");
  int n = o ? o->nodesetval->nodeNr : 0;
  out->disks = rp_calloc ((size_t) n + 1, sizeof *out->disks);
  for (int i = 0; i < n; i++)
    judge_disk (ctx, o->nodesetval->nodeTab[i], &out->disks[out->ndisks++]);
  xmlXPathFreeObject (o);
  out->agent = has (ctx, NULL, "/domain/devices/channel/target"
                    "[@type='virtio' and @name='org.qemu.guest_agent.0']");
  out->dac_label = str (ctx, NULL, "/domain/seclabel[@model='dac']/label");
  r = 0;
 out:
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
  return r;
}

void
rp_lvxml_domain_free (struct lv_domxml *d)
{
  for (size_t i = 0; i < d->ndisks; i++) {
    free (d->disks[i].target);
    free (d->disks[i].path);
    free (d->disks[i].skip);
  }
  free (d->disks);
  free (d->dac_label);
  memset (d, 0, sizeof *d);
}

int
rp_lvxml_backup (const char *xml, size_t len, struct lv_backupxml *out,
                 char **err)
{
  memset (out, 0, sizeof *out);
  xmlDocPtr doc = parse (xml, len, err);
  if (!doc)
    return -1;
  xmlXPathContextPtr ctx = xmlXPathNewContext (doc);
  int r = -1;
  if (!ctx || !has (ctx, NULL, "/domainbackup")) {
    *err = rp_strdup ("the XML is not a libvirt backup (no <domainbackup>)");
    goto out;
  }
  char *mode = str (ctx, NULL, "/domainbackup/@mode");
  out->pull = eq (mode, "pull");
  free (mode);
  out->incremental = str (ctx, NULL, "/domainbackup/incremental");
  out->socket = str (ctx, NULL, "/domainbackup/server"
                     "[@transport='unix']/@socket");
  xmlXPathObjectPtr o = find (ctx, NULL, "/domainbackup/disks/disk"
                              "[not(@backup='no')]");
  int n = o ? o->nodesetval->nodeNr : 0;
  out->disks = rp_calloc ((size_t) n + 1, sizeof *out->disks);
  for (int i = 0; i < n; i++) {
    xmlNodePtr d = o->nodesetval->nodeTab[i];
    struct lv_backup_disk *b = &out->disks[out->ndisks];
    b->name = str (ctx, d, "@name");
    if (!b->name)
      continue;
    b->exportname = str (ctx, d, "@exportname");
    b->exportbitmap = str (ctx, d, "@exportbitmap");
    out->ndisks++;
  }
  xmlXPathFreeObject (o);
  r = 0;
 out:
  xmlXPathFreeContext (ctx);
  xmlFreeDoc (doc);
  return r;
}

void
rp_lvxml_backup_free (struct lv_backupxml *b)
{
  for (size_t i = 0; i < b->ndisks; i++) {
    free (b->disks[i].name);
    free (b->disks[i].exportname);
    free (b->disks[i].exportbitmap);
  }
  free (b->disks);
  free (b->incremental);
  free (b->socket);
  memset (b, 0, sizeof *b);
}

/* ---- requests ---- */

static char *
dump (xmlDocPtr doc)
{
  xmlChar *buf = NULL;
  int len = 0;
  xmlDocDumpFormatMemory (doc, &buf, &len, 1);
  xmlFreeDoc (doc);
  if (!buf)
    abort ();
  char *r = rp_strdup ((const char *) buf);
  xmlFree (buf);
  return r;
}

static xmlNodePtr
child (xmlNodePtr parent, const char *name, const char *text)
{
  return xmlNewTextChild (parent, NULL, (const xmlChar *) name,
                          (const xmlChar *) text);
}

static void
prop (xmlNodePtr n, const char *name, const char *value)
{
  xmlSetProp (n, (const xmlChar *) name, (const xmlChar *) value);
}

/* <disks>: every one of DISKS with KEY=YES, every one of OTHERS with
 * KEY=NO. */
static void
disk_list (xmlNodePtr root, const char *key, const char *yes,
           const char *no, char *const *disks, char *const *scratch,
           char *const *others)
{
  xmlNodePtr list = child (root, "disks", NULL);
  for (size_t i = 0; disks && disks[i]; i++) {
    xmlNodePtr d = child (list, "disk", NULL);
    prop (d, "name", disks[i]);
    prop (d, key, yes);
    if (scratch) {
      prop (d, "type", "file");     /* the scratch image's type */
      prop (child (d, "scratch", NULL), "file", scratch[i]);
    }
  }
  for (size_t i = 0; others && others[i]; i++) {
    xmlNodePtr d = child (list, "disk", NULL);
    prop (d, "name", others[i]);
    prop (d, key, no);
  }
}

char *
rp_lvxml_checkpoint (const char *name, const char *description,
                     char *const *disks, char *const *others)
{
  xmlDocPtr doc = xmlNewDoc ((const xmlChar *) "1.0");
  xmlNodePtr root = xmlNewNode (NULL, (const xmlChar *) "domaincheckpoint");
  xmlDocSetRootElement (doc, root);
  child (root, "name", name);
  if (description)
    child (root, "description", description);
  disk_list (root, "checkpoint", "bitmap", "no", disks, NULL, others);
  return dump (doc);
}

char *
rp_lvxml_checkpoint_redefine (const char *name, const char *description,
                              long long created, char *const *disks,
                              char *const *others)
{
  xmlDocPtr doc = xmlNewDoc ((const xmlChar *) "1.0");
  xmlNodePtr root = xmlNewNode (NULL, (const xmlChar *) "domaincheckpoint");
  xmlDocSetRootElement (doc, root);
  child (root, "name", name);
  if (description)
    child (root, "description", description);
  char t[32];
  snprintf (t, sizeof t, "%lld", created);
  child (root, "creationTime", t);
  xmlNodePtr list = child (root, "disks", NULL);
  for (size_t i = 0; disks && disks[i]; i++) {
    xmlNodePtr d = child (list, "disk", NULL);
    prop (d, "name", disks[i]);
    prop (d, "checkpoint", "bitmap");
    prop (d, "bitmap", name);
  }
  for (size_t i = 0; others && others[i]; i++) {
    xmlNodePtr d = child (list, "disk", NULL);
    prop (d, "name", others[i]);
    prop (d, "checkpoint", "no");
  }
  return dump (doc);
}

char *
rp_lvxml_backup_pull (const char *incremental, const char *socket,
                      char *const *disks, char *const *scratch,
                      char *const *others)
{
  xmlDocPtr doc = xmlNewDoc ((const xmlChar *) "1.0");
  xmlNodePtr root = xmlNewNode (NULL, (const xmlChar *) "domainbackup");
  xmlDocSetRootElement (doc, root);
  prop (root, "mode", "pull");
  if (incremental)
    child (root, "incremental", incremental);
  xmlNodePtr server = child (root, "server", NULL);
  prop (server, "transport", "unix");
  prop (server, "socket", socket);
  disk_list (root, "backup", "yes", "no", disks, scratch, others);
  return dump (doc);
}
