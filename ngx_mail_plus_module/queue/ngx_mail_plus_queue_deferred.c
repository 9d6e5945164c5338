
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue_spool.h"


/*
 * deferred/ by due time and destination (docs/spool.md).  A deferred
 * message is deferred/<bucket>/<ID>, and a bucket is named
 *
 *     <due>.<key>.<slot>      8 lower case hex digits each
 *
 * the time its messages are due (their next attempt, rounded up: to the
 * second for short delays, to 1/64 of the delay for long ones), the
 * destination they wait for (a hash of its name; 0: none, or several),
 * and a slot that changes every 1024 deferrals of a worker, so that no
 * bucket grows without bound.  The file system is the index: a scan reads
 * deferred/ itself (one name per bucket, however many messages wait) and
 * only the buckets that are due, and never those of a destination that
 * waits for its next attempt; holding a backlog costs no memory and no
 * I/O until it is due.  A due bucket found empty is removed.
 *
 * A file right in deferred/ (as earlier versions left them, or moved there
 * by hand) is due at its mtime.
 *
 * A flush renames buckets to be due now: one rename() per bucket, never
 * one per message.
 */


#define NGX_MAIL_PLUS_QUEUE_SCAN_BUCKETS  1024


typedef struct {
    time_t                       due;
    uint32_t                     key;
    u_char                       name[NGX_MAIL_PLUS_QUEUE_BUCKET_LEN + 1];
} ngx_mail_plus_queue_bucket_t;


typedef struct {
    uint32_t                     key;
    ngx_uint_t                   share;    /* what this scan may take */
    ngx_uint_t                   probe;    /* a dead one's next attempt */
} ngx_mail_plus_queue_share_t;


static ngx_int_t ngx_mail_plus_queue_hex(u_char *p, uint32_t *value);
static int ngx_libc_cdecl ngx_mail_plus_queue_bucket_cmp(const void *one,
    const void *two);
static ngx_mail_plus_queue_wait_t *ngx_mail_plus_queue_waits(
    ngx_mail_plus_queue_due_t *due, uint32_t key);
static ngx_uint_t ngx_mail_plus_queue_take(ngx_mail_plus_queue_op_t *op,
    ngx_mail_plus_queue_bucket_t *b, ngx_uint_t n);
static void ngx_mail_plus_queue_flush_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_flush_finish(ngx_mail_plus_queue_op_t *op);


/* a destination's key: a hash of its name; never 0, which is none */

uint32_t
ngx_mail_plus_queue_key(ngx_str_t *name)
{
    uint32_t  key;

    key = ngx_crc32_short(name->data, name->len);

    return key ? key : 1;
}


/*
 * the bucket of a message due at "next": rounded up to the second for a
 * delay of a minute or so, to 1/64 of the delay for longer ones (at most
 * an hour), so that the buckets of one destination stay few
 */

u_char *
ngx_mail_plus_queue_bucket(u_char *p, time_t next, time_t now, uint32_t key,
    ngx_uint_t slot)
{
    time_t  step;

    step = (next > now) ? (next - now) / 64 : 1;

    if (step < 1) {
        step = 1;

    } else if (step > 3600) {
        step = 3600;
    }

    next = (next + step - 1) / step * step;

    return ngx_sprintf(p, "%08xD.%08xD.%08xD", (uint32_t) next, key,
                       (uint32_t) slot);
}


ngx_int_t
ngx_mail_plus_queue_bucket_parse(u_char *name, size_t len, time_t *due,
    uint32_t *key)
{
    uint32_t  t, slot;

    if (len != NGX_MAIL_PLUS_QUEUE_BUCKET_LEN
        || name[8] != '.' || name[17] != '.'
        || ngx_mail_plus_queue_hex(name, &t) != NGX_OK
        || ngx_mail_plus_queue_hex(name + 9, key) != NGX_OK
        || ngx_mail_plus_queue_hex(name + 18, &slot) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    *due = (time_t) t;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_queue_hex(u_char *p, uint32_t *value)
{
    u_char      c;
    uint32_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < 8; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');

        } else {
            c |= 0x20;

            if (c < 'a' || c > 'f') {
                return NGX_DECLINED;
            }

            v = v * 16 + (c - 'a' + 10);
        }
    }

    *value = v;

    return NGX_OK;
}


/*
 * the deferred part of a scan, in the thread pool: the buckets of
 * deferred/ are read by name; those due, except those of a destination
 * that waits, are taken from in due order, each destination up to its
 * share of the room, so that a large backlog of one destination does
 * not starve the others; due->more tells that more was due than taken
 */

void
ngx_mail_plus_queue_deferred_due(ngx_mail_plus_queue_op_t *op)
{
    u_char                        *name, path[NGX_MAX_PATH];
    size_t                         len;
    time_t                         t;
    uint32_t                       key;
    ngx_dir_t                      dir;
    ngx_uint_t                     i, j, nb, ns, room, taken;
    ngx_file_info_t                fi;
    ngx_mail_plus_queue_due_t     *due;
    ngx_mail_plus_queue_wait_t    *w;
    ngx_mail_plus_queue_share_t    shares[NGX_MAIL_PLUS_QUEUE_SCAN_BUCKETS];
    ngx_mail_plus_queue_bucket_t  *b;

    due = op->due;

    b = malloc(NGX_MAIL_PLUS_QUEUE_SCAN_BUCKETS
               * sizeof(ngx_mail_plus_queue_bucket_t));
    if (b == NULL) {
        op->err = ngx_errno;
        op->failed = "malloc() for a scan";
        return;
    }

    (void) ngx_sprintf(path, "%V/deferred%Z", &op->queue->path);

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        op->err = ngx_errno;
        op->failed = "opendir() of deferred/";
        free(b);
        return;
    }

    nb = 0;

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (ngx_mail_plus_queue_valid_id(name, len)) {

            /* a file right in deferred/: due at its mtime */

            (void) ngx_sprintf(path, "%V/deferred/%*s%Z", &op->queue->path,
                               len, name);

            if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {
                continue;
            }

            t = ngx_file_mtime(&fi);

            if (t > due->now) {
                if (due->next == 0 || t < due->next) {
                    due->next = t;
                }

                continue;
            }

            if (due->nids == due->nalloc) {
                due->more = 1;
                continue;
            }

            ngx_memcpy(due->ids[due->nids].id, name, len);
            due->ids[due->nids].id[len] = '\0';
            due->ids[due->nids].which = NGX_MAIL_PLUS_QUEUE_DEFERRED;
            due->ids[due->nids].bucket[0] = '\0';
            due->nids++;

            continue;
        }

        if (ngx_mail_plus_queue_bucket_parse(name, len, &t, &key) != NGX_OK) {
            continue;
        }

        if (t > due->now) {
            if (due->next == 0 || t < due->next) {
                due->next = t;
            }

            continue;
        }

        w = ngx_mail_plus_queue_waits(due, key);

        if (w && w->allow == 0) {
            due->waiting++;
            continue;
        }

        if (nb == NGX_MAIL_PLUS_QUEUE_SCAN_BUCKETS) {
            due->more = 1;
            continue;
        }

        b[nb].due = t;
        b[nb].key = key;
        ngx_memcpy(b[nb].name, name, len);
        b[nb].name[len] = '\0';
        nb++;
    }

    (void) ngx_close_dir(&dir);

    if (nb == 0 || due->nids == due->nalloc) {
        due->more |= (nb != 0);
        free(b);
        return;
    }

    ngx_qsort(b, nb, sizeof(ngx_mail_plus_queue_bucket_t),
              ngx_mail_plus_queue_bucket_cmp);

    /* the destinations due, each with an equal share of the room */

    ns = 0;

    for (i = 0; i < nb; i++) {
        for (j = 0; j < ns; j++) {
            if (shares[j].key == b[i].key) {
                break;
            }
        }

        if (j == ns) {
            shares[ns++].key = b[i].key;
        }
    }

    room = due->nalloc - due->nids;

    for (j = 0; j < ns; j++) {
        shares[j].share = ngx_max(room / ns, 1);
        shares[j].probe = 0;

        w = ngx_mail_plus_queue_waits(due, shares[j].key);

        if (w) {
            shares[j].share = ngx_min(shares[j].share, w->allow);
            shares[j].probe = 1;
        }
    }

    /*
     * what a probe leaves is not "more": it waits for the probe's result,
     * and the destination tells when it is alive again
     */

    for (i = 0; i < nb && due->nids < due->nalloc; i++) {
        for (j = 0; shares[j].key != b[i].key; j++) { /* void */ }

        if (shares[j].share == 0) {
            due->more |= !shares[j].probe;
            continue;
        }

        room = ngx_min(shares[j].share, due->nalloc - due->nids);

        taken = ngx_mail_plus_queue_take(op, &b[i], room);

        shares[j].share -= taken;

        if (taken == room && !shares[j].probe) {
            due->more = 1;
        }
    }

    if (i < nb) {
        due->more = 1;
    }

    free(b);
}


static int ngx_libc_cdecl
ngx_mail_plus_queue_bucket_cmp(const void *one, const void *two)
{
    const ngx_mail_plus_queue_bucket_t  *a = one;
    const ngx_mail_plus_queue_bucket_t  *b = two;

    if (a->due != b->due) {
        return (a->due < b->due) ? -1 : 1;
    }

    return ngx_strcmp(a->name, b->name);
}


static ngx_mail_plus_queue_wait_t *
ngx_mail_plus_queue_waits(ngx_mail_plus_queue_due_t *due, uint32_t key)
{
    ngx_uint_t  i;

    for (i = 0; i < due->nwait; i++) {
        if (due->wait[i].key == key) {
            return &due->wait[i];
        }
    }

    return NULL;
}


/* up to n IDs of a due bucket; a bucket found empty is removed */

static ngx_uint_t
ngx_mail_plus_queue_take(ngx_mail_plus_queue_op_t *op,
    ngx_mail_plus_queue_bucket_t *b, ngx_uint_t n)
{
    u_char                        *name, path[NGX_MAX_PATH];
    size_t                         len;
    ngx_dir_t                      dir;
    ngx_uint_t                     taken, names;
    ngx_mail_plus_queue_due_t     *due;
    ngx_mail_plus_queue_due_id_t  *id;

    due = op->due;

    (void) ngx_sprintf(path, "%V/deferred/%s%Z", &op->queue->path, b->name);

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        return 0;
    }

    taken = 0;
    names = 0;

    while (taken < n && ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (name[0] == '.') {
            continue;
        }

        names++;

        if (!ngx_mail_plus_queue_valid_id(name, len)) {
            continue;
        }

        id = &due->ids[due->nids++];

        ngx_memcpy(id->id, name, len);
        id->id[len] = '\0';
        id->which = NGX_MAIL_PLUS_QUEUE_DEFERRED;
        ngx_memcpy(id->bucket, b->name, NGX_MAIL_PLUS_QUEUE_BUCKET_LEN + 1);

        taken++;
    }

    (void) ngx_close_dir(&dir);

    if (names == 0) {

        /* ENOTEMPTY: a deferral came meanwhile; it is found next time */

        (void) rmdir((char *) path);
    }

    return taken;
}


/* the messages of deferred/, for counts */

ngx_uint_t
ngx_mail_plus_queue_deferred_count(ngx_mail_plus_queue_t *q)
{
    u_char      *name, path[NGX_MAX_PATH];
    size_t       len;
    time_t       due;
    uint32_t     key;
    ngx_dir_t    dir;
    ngx_uint_t   n;

    (void) ngx_sprintf(path, "%V/deferred%Z", &q->path);

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        return 0;
    }

    n = 0;

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (ngx_mail_plus_queue_valid_id(name, len)) {
            n++;
            continue;
        }

        if (ngx_mail_plus_queue_bucket_parse(name, len, &due, &key)
            == NGX_OK)
        {
            (void) ngx_sprintf(path, "%V/deferred/%*s%Z", &q->path, len,
                               name);
            n += ngx_mail_plus_queue_count(path);
        }
    }

    (void) ngx_close_dir(&dir);

    return n;
}


/*
 * the path of a deferred message: right in deferred/, or in one of its
 * buckets (a stat() per bucket: as many as due times and destinations,
 * not as messages); NGX_DECLINED: not deferred
 */

ngx_int_t
ngx_mail_plus_queue_deferred_find(ngx_mail_plus_queue_t *q, u_char *id,
    u_char *path)
{
    u_char           *name;
    size_t            len;
    time_t            due;
    uint32_t          key;
    ngx_int_t         rc;
    ngx_dir_t         dir;
    ngx_file_info_t   fi;

    (void) ngx_sprintf(path, "%V/deferred/%s%Z", &q->path, id);

    if (ngx_file_info(path, &fi) == 0) {
        return NGX_OK;
    }

    (void) ngx_sprintf(path, "%V/deferred%Z", &q->path);

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (ngx_mail_plus_queue_bucket_parse(name, len, &due, &key)
            != NGX_OK)
        {
            continue;
        }

        (void) ngx_sprintf(path, "%V/deferred/%*s/%s%Z", &q->path, len, name,
                           id);

        if (ngx_file_info(path, &fi) == 0) {
            rc = NGX_OK;
            break;
        }
    }

    (void) ngx_close_dir(&dir);

    return rc;
}


/*
 * a flush (the queue API's): the buckets of the key (0: all) are renamed
 * to be due now, in the thread pool; when it is done, every worker hears
 * of it through the shared zone, and those that held the destination
 * back for its next attempt try it at once
 */

ngx_int_t
ngx_mail_plus_queue_flush(ngx_mail_plus_queue_t *q, uint32_t key,
    ngx_uint_t *flushed, ngx_mail_plus_queue_defer_pt handler, void *data,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, NULL, ngx_mail_plus_queue_flush_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "flush";

    op->key = key;
    op->flushed = flushed;
    op->next = ngx_time();
    op->finish = ngx_mail_plus_queue_flush_finish;

    *flushed = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                   "queue: flush of destination %08xD posted", key);

    return ngx_mail_plus_queue_op_post(op, log);
}


/*
 * <due>.<key>.<slot> to <now>.<key>.<a hash of the old name>, or, when
 * that one is there (a rare collision), its messages are moved into it
 * one by one; no pool, no log: it may run in a thread
 */

static void
ngx_mail_plus_queue_flush_run(ngx_mail_plus_queue_op_t *op)
{
    u_char      *name, from[NGX_MAX_PATH], to[NGX_MAX_PATH],
                 file[NGX_MAX_PATH], dest[NGX_MAX_PATH];
    size_t       len;
    time_t       due;
    uint32_t     key;
    ngx_dir_t    dir, bucket;
    ngx_uint_t   n;

    (void) ngx_sprintf(from, "%V/deferred%Z", &op->queue->path);

    if (ngx_mail_plus_queue_open_dir(from, &dir) == NGX_ERROR) {
        op->err = ngx_errno;
        op->failed = "opendir() of deferred/";
        return;
    }

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (ngx_mail_plus_queue_bucket_parse(name, len, &due, &key) != NGX_OK
            || (op->key && key != op->key))
        {
            continue;
        }

        (void) ngx_sprintf(from, "%V/deferred/%*s%Z", &op->queue->path, len,
                           name);

        n = ngx_mail_plus_queue_count(from);

        if (due <= op->next) {

            /* due already: it waited for its destination only */

            *op->flushed += n;
            continue;
        }

        (void) ngx_sprintf(to, "%V/deferred/%08xD.%08xD.%08xD%Z",
                           &op->queue->path, (uint32_t) op->next, key,
                           ngx_crc32_short(name, len));

        if (rename((char *) from, (char *) to) == 0) {
            *op->flushed += n;
            continue;
        }

        if (ngx_mail_plus_queue_open_dir(from, &bucket) == NGX_ERROR) {
            continue;
        }

        while (ngx_read_dir(&bucket) == NGX_OK) {
            name = ngx_de_name(&bucket);
            len = ngx_de_namelen(&bucket);

            if (!ngx_mail_plus_queue_valid_id(name, len)) {
                continue;
            }

            (void) ngx_sprintf(file, "%s/%*s%Z", from, len, name);
            (void) ngx_sprintf(dest, "%s/%*s%Z", to, len, name);

            if (rename((char *) file, (char *) dest) == 0) {
                (*op->flushed)++;
            }
        }

        (void) ngx_close_dir(&bucket);
    }

    (void) ngx_close_dir(&dir);
}


/* the workers hear of it: the key goes into the ring, then the count */

static void
ngx_mail_plus_queue_flush_finish(ngx_mail_plus_queue_op_t *op)
{
    ngx_slab_pool_t           *shpool;
    ngx_mail_plus_queue_sh_t  *sh;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "queue: flush of destination %08xD: %ui messages due",
                   op->key, *op->flushed);

    if (op->queue->shm_zone == NULL || op->queue->shm_zone->data == NULL) {
        return;
    }

    shpool = (ngx_slab_pool_t *) op->queue->shm_zone->shm.addr;
    sh = op->queue->shm_zone->data;

    ngx_shmtx_lock(&shpool->mutex);

    sh->keys[sh->flushes % NGX_MAIL_PLUS_QUEUE_FLUSHES] = op->key;

    ngx_memory_barrier();

    sh->flushes++;

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * the keys flushed since *seen, into keys (room for
 * NGX_MAIL_PLUS_QUEUE_FLUSHES); one key 0 when the ring went round; with
 * keys NULL, *seen only catches up
 */

ngx_uint_t
ngx_mail_plus_queue_flushed(ngx_mail_plus_queue_t *q, ngx_atomic_uint_t *seen,
    uint32_t *keys)
{
    ngx_uint_t                 n;
    ngx_atomic_uint_t          flushes, i;
    ngx_mail_plus_queue_sh_t  *sh;

    if (q->shm_zone == NULL || q->shm_zone->data == NULL) {
        return 0;
    }

    sh = q->shm_zone->data;

    flushes = sh->flushes;

    ngx_memory_barrier();

    if (flushes == *seen) {
        return 0;
    }

    if (keys == NULL) {
        *seen = flushes;
        return 0;
    }

    if (flushes - *seen > NGX_MAIL_PLUS_QUEUE_FLUSHES) {
        keys[0] = 0;
        *seen = flushes;
        return 1;
    }

    n = 0;

    for (i = *seen; i != flushes; i++) {
        keys[n++] = sh->keys[i % NGX_MAIL_PLUS_QUEUE_FLUSHES];
    }

    *seen = flushes;

    return n;
}


/* the shared zone of the queue: the flushes */

ngx_int_t
ngx_mail_plus_queue_shm_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_mail_plus_queue_sh_t  *sh;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_mail_plus_queue_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}
