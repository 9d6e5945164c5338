
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue_spool.h"


/*
 * The spool seen from outside, for the status endpoint and the queue API:
 * the number of files in each directory, a listing of the messages, and
 * the operations on one message (show, hold, release from hold, delete).
 * Reading directories that may hold many thousands of names blocks, so
 * all of it runs in the thread pool.
 */


static void ngx_mail_plus_queue_sizes_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_list_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_list_dir(ngx_mail_plus_queue_op_t *op,
    ngx_uint_t where, u_char *dirname, ngx_uint_t buckets);
static ngx_int_t ngx_mail_plus_queue_entry(u_char *path,
    ngx_mail_plus_queue_entry_t *e);
static void ngx_mail_plus_queue_admin_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_admin_finish(ngx_mail_plus_queue_op_t *op);
static ngx_int_t ngx_mail_plus_queue_locate(ngx_mail_plus_queue_t *q,
    u_char *id, ngx_mail_plus_queue_admin_t *a, u_char *path);
static ngx_int_t ngx_mail_plus_queue_move(ngx_mail_plus_queue_op_t *op,
    ngx_uint_t from, ngx_uint_t to);
static ngx_int_t ngx_mail_plus_queue_delete(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_show(ngx_mail_plus_queue_op_t *op,
    u_char *path);
static ngx_int_t ngx_mail_plus_queue_sync_dir(ngx_mail_plus_queue_op_t *op,
    char *sub);


/*
 * the number of files in each of incoming/, active/, deferred/, hold/ and
 * corrupt/, for the status endpoint: reading directories that may hold
 * many thousands of names blocks, so it is done in the thread pool like
 * the moves, and "sizes" is filled in before the handler is called; the
 * same results as ngx_mail_plus_queue_defer(); a directory that is not
 * there (deferred/ without delivery) counts 0
 */

ngx_int_t
ngx_mail_plus_queue_sizes(ngx_mail_plus_queue_t *q, ngx_uint_t *sizes,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool,
    ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, NULL, ngx_mail_plus_queue_sizes_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "count";

    op->sizes = sizes;

    return ngx_mail_plus_queue_op_post(op, log);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_sizes_run(ngx_mail_plus_queue_op_t *op)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t  i;

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {

        if (i == NGX_MAIL_PLUS_QUEUE_IN_DEFERRED) {
            op->sizes[i] = ngx_mail_plus_queue_deferred_count(op->queue);
            continue;
        }

        (void) ngx_sprintf(path, "%V/%s%Z", &op->queue->path,
                           ngx_mail_plus_queue_dirs[i]);
        op->sizes[i] = ngx_mail_plus_queue_count(path);
    }
}


/*
 * a listing for the queue API: the messages of incoming/, active/,
 * deferred/, hold/ and corrupt/; at most list->nalloc of them are
 * described (the caller allocates the room: memory stays bounded however
 * large the spool is), all of them are counted; the same results as
 * ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_list(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_list_t *list, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, NULL, ngx_mail_plus_queue_list_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "listing";

    op->list = list;

    return ngx_mail_plus_queue_op_post(op, log);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_list_run(ngx_mail_plus_queue_op_t *op)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t  i;

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {
        (void) ngx_sprintf(path, "%V/%s%Z", &op->queue->path,
                           ngx_mail_plus_queue_dirs[i]);

        ngx_mail_plus_queue_list_dir(op, i, path,
                                     i == NGX_MAIL_PLUS_QUEUE_IN_DEFERRED);
    }
}


/* the messages of one directory, and with "buckets" of its buckets */

static void
ngx_mail_plus_queue_list_dir(ngx_mail_plus_queue_op_t *op, ngx_uint_t where,
    u_char *dirname, ngx_uint_t buckets)
{
    u_char                       *name, path[NGX_MAX_PATH];
    size_t                        len;
    time_t                        due;
    uint32_t                      key;
    ngx_dir_t                     dir;
    ngx_mail_plus_queue_list_t   *list;
    ngx_mail_plus_queue_entry_t  *e;

    list = op->list;

    if (ngx_mail_plus_queue_open_dir(dirname, &dir) == NGX_ERROR) {
        return;
    }

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (buckets
            && ngx_mail_plus_queue_bucket_parse(name, len, &due, &key)
               == NGX_OK)
        {
            (void) ngx_sprintf(path, "%s/%*s%Z", dirname, len, name);
            ngx_mail_plus_queue_list_dir(op, where, path, 0);
            continue;
        }

        /* <ID>, <ID>.<pid> in active/, <ID>.<seconds> in corrupt/ */

        if (len < NGX_MAIL_PLUS_QUEUE_ID_LEN
            || len > NGX_MAIL_PLUS_QUEUE_ID_LEN + 1 + NGX_INT64_LEN
            || !ngx_mail_plus_queue_valid_id(name, NGX_MAIL_PLUS_QUEUE_ID_LEN)
            || (len > NGX_MAIL_PLUS_QUEUE_ID_LEN
                && name[NGX_MAIL_PLUS_QUEUE_ID_LEN] != '.'))
        {
            continue;
        }

        list->total++;

        if (list->nentries == list->nalloc) {
            continue;
        }

        e = &list->entries[list->nentries];
        ngx_memzero(e, sizeof(ngx_mail_plus_queue_entry_t));

        ngx_memcpy(e->id, name, NGX_MAIL_PLUS_QUEUE_ID_LEN);
        e->where = where;

        (void) ngx_sprintf(path, "%s/%*s%Z", dirname, len, name);

        if (ngx_mail_plus_queue_entry(path, e) != NGX_OK) {
            list->total--;      /* gone meanwhile */
            continue;
        }

        list->nentries++;
    }

    (void) ngx_close_dir(&dir);
}


/*
 * the envelope lines a listing shows, read in pieces and parsed line by
 * line by the record reader: no more memory than the buffer, however
 * many recipients there are
 */

static ngx_int_t
ngx_mail_plus_queue_entry(u_char *path, ngx_mail_plus_queue_entry_t *e)
{
    char                          *reason;
    u_char                        *p, *eol, *end, *last, buf[4096];
    off_t                          offset;
    size_t                         len;
    ssize_t                        n;
    ngx_fd_t                       fd;
    ngx_file_info_t                fi;
    ngx_mail_plus_queue_record_t   r;

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        return NGX_DECLINED;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    e->size = ngx_file_size(&fi);
    e->mtime = ngx_file_mtime(&fi);

    /* the recipients are only counted */

    ngx_memzero(&r, sizeof(ngx_mail_plus_queue_record_t));

    offset = 0;
    len = 0;

    while (offset < 64 * 1024 * 1024) {
        n = pread(fd, buf + len, sizeof(buf) - len, offset);

        if (n <= 0) {
            break;
        }

        offset += n;
        last = buf + len + n;

        for (p = buf; (eol = ngx_strlchr(p, last, LF)) != NULL; p = eol + 1) {
            end = (eol > p && eol[-1] == CR) ? eol - 1 : eol;

            if (ngx_mail_plus_spool_line(&r, p, end, &reason) == NGX_DONE) {
                e->envelope = 1;
                goto done;
            }

            /* the sender is kept, the buffer is reused */

            if (r.sender.data) {
                e->sender_len = ngx_min(r.sender.len, sizeof(e->sender));
                ngx_memcpy(e->sender, r.sender.data, e->sender_len);
                r.sender.data = NULL;
            }
        }

        len = last - p;

        if (len == sizeof(buf)) {
            break;          /* longer than any envelope line */
        }

        ngx_memmove(buf, p, len);
    }

done:

    e->recipients = r.nrcpts;
    e->arrival = r.arrival;

    (void) ngx_close_file(fd);

    return NGX_OK;
}


/*
 * one message for the queue API, by its ID (checked by the caller):
 * shown, moved to hold/ (from incoming/ or deferred/ only), moved from
 * hold/ back to incoming/, or deleted with its state (from anywhere but
 * active/); a->result is NGX_OK, NGX_DECLINED (no such message), NGX_BUSY
 * (it is not where the operation applies; a->where says where it is) or
 * NGX_ERROR; the same results as ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_admin(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_admin_t *a, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    if (!ngx_mail_plus_queue_valid_id(id, NGX_MAIL_PLUS_QUEUE_ID_LEN)) {
        return NGX_ERROR;
    }

    op = ngx_mail_plus_queue_op_alloc(q, id, ngx_mail_plus_queue_admin_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "admin";

    op->admin = a;
    op->finish = ngx_mail_plus_queue_admin_finish;
    a->result = NGX_ERROR;

    return ngx_mail_plus_queue_op_post(op, log);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_admin_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                        path[NGX_MAX_PATH];
    ngx_int_t                     rc;
    ngx_mail_plus_queue_admin_t  *a;

    a = op->admin;

    switch (a->what) {

    case NGX_MAIL_PLUS_QUEUE_HOLD:
        rc = ngx_mail_plus_queue_move(op, NGX_MAIL_PLUS_QUEUE_IN_INCOMING,
                                      NGX_MAIL_PLUS_QUEUE_IN_HOLD);

        if (rc == NGX_DECLINED) {
            rc = ngx_mail_plus_queue_move(op, NGX_MAIL_PLUS_QUEUE_IN_DEFERRED,
                                          NGX_MAIL_PLUS_QUEUE_IN_HOLD);
        }

        break;

    case NGX_MAIL_PLUS_QUEUE_UNHOLD:
        rc = ngx_mail_plus_queue_move(op, NGX_MAIL_PLUS_QUEUE_IN_HOLD,
                                      NGX_MAIL_PLUS_QUEUE_IN_INCOMING);
        break;

    case NGX_MAIL_PLUS_QUEUE_DELETE:
        rc = ngx_mail_plus_queue_delete(op);
        break;

    default: /* NGX_MAIL_PLUS_QUEUE_SHOW */
        rc = ngx_mail_plus_queue_locate(op->queue, op->id, a, path);

        if (rc == NGX_OK) {
            ngx_mail_plus_queue_show(op, path);
        }

        a->result = rc;
        return;
    }

    /* not where the operation applies: somewhere else, or nowhere */

    if (rc == NGX_DECLINED
        && ngx_mail_plus_queue_locate(op->queue, op->id, a, path) == NGX_OK)
    {
        rc = NGX_BUSY;
    }

    a->result = rc;
}


/*
 * a message released from hold/ is scheduled at once, like a new one; a
 * message shown has its records read, for the caller
 */

static void
ngx_mail_plus_queue_admin_finish(ngx_mail_plus_queue_op_t *op)
{
    ngx_mail_plus_queue_admin_t   *a;
    ngx_mail_plus_queue_record_t  *r;

    a = op->admin;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "queue: admin %ui of message %s: %i, in %s/", a->what,
                   op->id, a->result, ngx_mail_plus_queue_dirs[a->where]);

    if (a->result != NGX_OK) {
        return;
    }

    if (a->what == NGX_MAIL_PLUS_QUEUE_UNHOLD && op->queue->notify) {
        op->queue->notify(op->queue, op->id);
        return;
    }

    if (a->what != NGX_MAIL_PLUS_QUEUE_SHOW || a->head.len == 0) {
        return;
    }

    r = &a->record;

    ngx_memzero(r, sizeof(ngx_mail_plus_queue_record_t));

    r->rcpts = ngx_array_create(op->pool, 4,
                                sizeof(ngx_mail_plus_queue_rcpt_t));

    if (r->rcpts == NULL
        || ngx_mail_plus_spool_show(r, a->head.data, a->head.len) != NGX_OK)
    {
        a->result = NGX_ERROR;
        return;
    }

    ngx_mail_plus_spool_state(r, a->state.data, a->state.len);
}


/* where a message is: a->where, its size, its mtime, its path */

static ngx_int_t
ngx_mail_plus_queue_locate(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_admin_t *a, u_char *path)
{
    u_char           *name;
    size_t            len;
    ngx_int_t         rc;
    ngx_dir_t         dir;
    ngx_uint_t        i;
    ngx_file_info_t   fi;

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {

        if (i == NGX_MAIL_PLUS_QUEUE_IN_DEFERRED) {
            if (ngx_mail_plus_queue_deferred_find(q, id, path) != NGX_OK) {
                continue;
            }

            goto found;
        }

        if (i != NGX_MAIL_PLUS_QUEUE_IN_ACTIVE) {
            (void) ngx_sprintf(path, "%V/%s/%s%Z", &q->path,
                               ngx_mail_plus_queue_dirs[i], id);
            goto found;
        }

        /* active/<ID>.<pid> */

        (void) ngx_sprintf(path, "%V/active%Z", &q->path);

        if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
            continue;
        }

        rc = NGX_DECLINED;

        while (ngx_read_dir(&dir) == NGX_OK) {
            name = ngx_de_name(&dir);
            len = ngx_de_namelen(&dir);

            if (len >= NGX_MAIL_PLUS_QUEUE_ID_LEN
                && len <= NGX_MAIL_PLUS_QUEUE_ID_LEN + 1 + NGX_INT64_LEN
                && ngx_strncmp(name, id, NGX_MAIL_PLUS_QUEUE_ID_LEN) == 0
                && (len == NGX_MAIL_PLUS_QUEUE_ID_LEN
                    || name[NGX_MAIL_PLUS_QUEUE_ID_LEN] == '.'))
            {
                (void) ngx_sprintf(path, "%V/active/%*s%Z", &q->path, len,
                                   name);
                rc = NGX_OK;
                break;
            }
        }

        (void) ngx_close_dir(&dir);

        if (rc != NGX_OK) {
            continue;
        }

    found:

        if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {
            continue;
        }

        a->where = i;
        a->size = ngx_file_size(&fi);
        a->mtime = ngx_file_mtime(&fi);

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * from/<ID> to to/<ID>, and to/ is fsynced; NGX_DECLINED: it is not in
 * from/; a file already in to/ is never replaced
 */

static ngx_int_t
ngx_mail_plus_queue_move(ngx_mail_plus_queue_op_t *op, ngx_uint_t from,
    ngx_uint_t to)
{
    u_char           src[NGX_MAX_PATH], dst[NGX_MAX_PATH];
    ngx_file_info_t  fi;

    if (from != NGX_MAIL_PLUS_QUEUE_IN_DEFERRED) {
        (void) ngx_sprintf(src, "%V/%s/%s%Z", &op->queue->path,
                           ngx_mail_plus_queue_dirs[from], op->id);

    } else if (ngx_mail_plus_queue_deferred_find(op->queue, op->id, src)
               != NGX_OK)
    {
        return NGX_DECLINED;
    }

    (void) ngx_sprintf(dst, "%V/%s/%s%Z", &op->queue->path,
                       ngx_mail_plus_queue_dirs[to], op->id);

    if (stat((char *) dst, &fi) == 0) {
        op->admin->where = to;
        return NGX_BUSY;
    }

    if (rename((char *) src, (char *) dst) == -1) {
        if (ngx_errno == NGX_ENOENT) {
            return NGX_DECLINED;
        }

        op->err = ngx_errno;
        op->failed = "rename() of a queue file";
        return NGX_ERROR;
    }

    op->admin->where = from;

    return ngx_mail_plus_queue_sync_dir(op, ngx_mail_plus_queue_dirs[to]);
}


/* the file and its state go, from anywhere but active/ */

static ngx_int_t
ngx_mail_plus_queue_delete(ngx_mail_plus_queue_op_t *op)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t  i;

    static ngx_uint_t  from[] = { NGX_MAIL_PLUS_QUEUE_IN_INCOMING,
                                  NGX_MAIL_PLUS_QUEUE_IN_DEFERRED,
                                  NGX_MAIL_PLUS_QUEUE_IN_HOLD,
                                  NGX_MAIL_PLUS_QUEUE_IN_CORRUPT };

    for (i = 0; i < sizeof(from) / sizeof(from[0]); i++) {

        if (from[i] != NGX_MAIL_PLUS_QUEUE_IN_DEFERRED) {
            (void) ngx_sprintf(path, "%V/%s/%s%Z", &op->queue->path,
                               ngx_mail_plus_queue_dirs[from[i]], op->id);

        } else if (ngx_mail_plus_queue_deferred_find(op->queue, op->id, path)
                   != NGX_OK)
        {
            continue;
        }

        if (unlink((char *) path) == -1) {
            if (ngx_errno == NGX_ENOENT) {
                continue;
            }

            op->err = ngx_errno;
            op->failed = "unlink() of a queue file";
            return NGX_ERROR;
        }

        op->admin->where = from[i];

        /* the directory it was in: deferred/<bucket> for a deferred one */

        path[ngx_strlen(path) - NGX_MAIL_PLUS_QUEUE_ID_LEN - 1] = '\0';

        if (ngx_mail_plus_queue_sync_dir(op, (char *) path
                                             + op->queue->path.len + 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        (void) ngx_sprintf(path, "%V/state/%s%Z", &op->queue->path, op->id);

        if (unlink((char *) path) == -1) {
            if (ngx_errno == NGX_ENOENT) {
                return NGX_OK;
            }

            op->err = ngx_errno;
            op->failed = "unlink() of a state file";
            return NGX_ERROR;
        }

        return ngx_mail_plus_queue_sync_dir(op, "state");
    }

    return NGX_DECLINED;
}


/*
 * the envelope (up to its "end" line, if it fits in a->head_size) and the
 * state file (up to a->state_size), into the room the caller gave
 */

static void
ngx_mail_plus_queue_show(ngx_mail_plus_queue_op_t *op, u_char *path)
{
    u_char                       *p, *last;
    ssize_t                       n;
    ngx_fd_t                      fd;
    ngx_mail_plus_queue_admin_t  *a;

    a = op->admin;

    a->head.len = 0;
    a->state.len = 0;

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        n = pread(fd, a->head.data, a->head_size, 0);
        (void) ngx_close_file(fd);

        last = a->head.data + (n > 0 ? n : 0);

        for (p = a->head.data; (p = ngx_strlchr(p, last, LF)) != NULL; p++) {
            if (last - p > 5 && ngx_strncmp(p + 1, "end\r\n", 5) == 0) {
                a->head.len = p + 6 - a->head.data;
                break;
            }
        }
    }

    (void) ngx_sprintf(path, "%V/state/%s%Z", &op->queue->path, op->id);

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        n = pread(fd, a->state.data, a->state_size, 0);
        (void) ngx_close_file(fd);

        a->state.len = n > 0 ? n : 0;
    }
}


static ngx_int_t
ngx_mail_plus_queue_sync_dir(ngx_mail_plus_queue_op_t *op, char *sub)
{
    u_char    path[NGX_MAX_PATH];
    ngx_fd_t  fd;

    (void) ngx_sprintf(path, "%V/%s%Z", &op->queue->path, sub);

    fd = open((char *) path, O_RDONLY|O_DIRECTORY);

    if (fd == -1 || fsync(fd) == -1) {
        op->err = ngx_errno;
        op->failed = "fsync() of a spool directory";

        if (fd != -1) {
            (void) close(fd);
        }

        return NGX_ERROR;
    }

    (void) close(fd);

    return NGX_OK;
}
