
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue_spool.h"


/*
 * The delivery's side of the spool (docs/spool.md): scans for due
 * messages, claims and the reads of a claimed file, deferrals, files set
 * aside as corrupt, removals and releases.
 *
 * A claim is a rename() into active/ with the pid of the claiming worker
 * in the name: a claim whose process no longer runs is taken back into
 * incoming/ (at-least-once: a duplicate is possible, a loss is not).
 *
 * Moves of a claimed message that must be durable run in the thread pool:
 * a deferral (a new state file, written aside, fsynced and renamed into
 * place, then the queue file's mtime set to the next attempt and the file
 * renamed into deferred/), and the move of a corrupt file into corrupt/
 * (a rename, then an fsync() of corrupt/).
 */


/*
 * the reader of a delivery connection: one read in flight at a time;
 * malloc()ed, so that it can outlive the connection that made it
 */

struct ngx_mail_plus_queue_reader_s {
    ngx_mail_plus_queue_t          *queue;
    ngx_log_t                      *log;
    ngx_fd_t                        fd;       /* a dup() */
    off_t                           offset;
    size_t                          len;
    ssize_t                         n;
    ngx_err_t                       err;
    u_char                         *buf;
    ngx_mail_plus_queue_read_pt     handler;
    void                           *data;
    unsigned                        busy:1;
    unsigned                        orphan:1;
#if (NGX_THREADS)
    ngx_thread_task_t               task;
#else
    ngx_event_t                     event;
#endif
};


static void ngx_mail_plus_queue_scan_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_scan_finish(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_load_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_load_finish(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_load_free(void *data);
static u_char *ngx_mail_plus_queue_read_envelope(ngx_fd_t fd, off_t size,
    size_t *len, ngx_err_t *err);
static u_char *ngx_mail_plus_queue_read_state(ngx_mail_plus_queue_t *q,
    u_char *id, size_t *len, ngx_err_t *err);
static void ngx_mail_plus_queue_read_run(ngx_mail_plus_queue_reader_t *rd);
#if (NGX_THREADS)
static void ngx_mail_plus_queue_read_thread(void *data, ngx_log_t *log);
#endif
static void ngx_mail_plus_queue_read_done(ngx_event_t *ev);
static void ngx_mail_plus_queue_defer_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_corrupt_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_remove_run(ngx_mail_plus_queue_op_t *op);


ngx_int_t
ngx_mail_plus_queue_delivery_init(ngx_cycle_t *cycle,
    ngx_mail_plus_queue_t *q)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t  n;

    (void) ngx_sprintf(path, "%V/deferred%Z", &q->path);

    if (ngx_mail_plus_queue_mkdir(cycle, path) != NGX_OK) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(path, "%V/state%Z", &q->path);

    if (ngx_mail_plus_queue_mkdir(cycle, path) != NGX_OK) {
        return NGX_ERROR;
    }

    n = ngx_mail_plus_queue_reclaim(q, cycle->log);

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "queue spool \"%V\": %ui messages deferred, "
                  "%ui claims of gone processes taken back",
                  &q->path, ngx_mail_plus_queue_deferred_count(q), n);

    return NGX_OK;
}


void
ngx_mail_plus_queue_set_notify(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_notify_pt notify)
{
    q->notify = notify;
}


/*
 * claims in active/ of processes that no longer run go back to incoming/;
 * with no log (in a thread), nothing is logged: the count tells
 */

ngx_uint_t
ngx_mail_plus_queue_reclaim(ngx_mail_plus_queue_t *q, ngx_log_t *log)
{
    u_char      *name, *dot, from[NGX_MAX_PATH], to[NGX_MAX_PATH];
    size_t       len;
    ngx_int_t    pid;
    ngx_dir_t    dir;
    ngx_uint_t   n;

    n = 0;

    (void) ngx_sprintf(from, "%V/active%Z", &q->path);

    if (ngx_mail_plus_queue_open_dir(from, &dir) == NGX_ERROR) {
        return 0;
    }

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (len < NGX_MAIL_PLUS_QUEUE_ID_LEN
            || !ngx_mail_plus_queue_valid_id(name, NGX_MAIL_PLUS_QUEUE_ID_LEN)
            || len > NGX_MAIL_PLUS_QUEUE_ID_LEN + 1 + NGX_INT64_LEN)
        {
            continue;
        }

        dot = name + NGX_MAIL_PLUS_QUEUE_ID_LEN;

        if (dot < name + len) {
            if (*dot != '.') {
                continue;
            }

            pid = ngx_atoi(dot + 1, name + len - dot - 1);

            if (pid > 0 && (kill(pid, 0) == 0 || ngx_errno == NGX_EPERM)) {
                continue;
            }
        }

        (void) ngx_sprintf(from, "%V/active/%*s%Z", &q->path, len, name);
        (void) ngx_sprintf(to, "%V/incoming/%*s%Z", &q->path,
                           (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, name);

        if (ngx_rename_file(from, to) == NGX_FILE_ERROR) {
            if (ngx_errno != NGX_ENOENT && log) {
                ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                              ngx_rename_file_n " \"%s\" to \"%s\" failed",
                              from, to);
            }

            continue;
        }

        if (log) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "queue: message %*s taken back from a gone process",
                          (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, name);
        }

        n++;
    }

    (void) ngx_close_dir(&dir);

    return n;
}


/*
 * the delivery's scan, in the thread pool: with due->reclaim, claims of
 * gone processes are taken back; then up to due->nalloc queue IDs are
 * found, those of incoming/ first, then those of the buckets of deferred/
 * that are due, except those of the destinations of due->wait
 * (ngx_mail_plus_queue_deferred.c); the same results as
 * ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_scan(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_due_t *due, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, NULL, ngx_mail_plus_queue_scan_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "scan";

    due->nids = 0;
    due->reclaimed = 0;
    due->next = 0;
    due->waiting = 0;
    due->more = 0;

    op->due = due;
    op->finish = ngx_mail_plus_queue_scan_finish;

    return ngx_mail_plus_queue_op_post(op, log);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_scan_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                     *name, path[NGX_MAX_PATH];
    size_t                      len;
    ngx_dir_t                   dir;
    ngx_mail_plus_queue_due_t  *due;

    due = op->due;

    if (due->reclaim) {
        due->reclaimed = ngx_mail_plus_queue_reclaim(op->queue, NULL);
    }

    (void) ngx_sprintf(path, "%V/incoming%Z", &op->queue->path);

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        op->err = ngx_errno;
        op->failed = "opendir() of incoming/";
        ngx_mail_plus_queue_deferred_due(op);
        return;
    }

    while (ngx_read_dir(&dir) == NGX_OK) {
        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (!ngx_mail_plus_queue_valid_id(name, len)) {
            continue;
        }

        if (due->nids == due->nalloc) {
            due->more = 1;
            break;
        }

        ngx_memcpy(due->ids[due->nids].id, name, len);
        due->ids[due->nids].id[len] = '\0';
        due->ids[due->nids].which = NGX_MAIL_PLUS_QUEUE_INCOMING;
        due->ids[due->nids].bucket[0] = '\0';
        due->nids++;
    }

    (void) ngx_close_dir(&dir);

    ngx_mail_plus_queue_deferred_due(op);
}


/*
 * a claim of incoming/<ID> or deferred/[<bucket>/]<ID> (load->which,
 * load->bucket), then its
 * envelope and its state file are read, in the thread pool; the same
 * results as ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_load(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_load_t *load, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    if (!ngx_mail_plus_queue_valid_id(id, NGX_MAIL_PLUS_QUEUE_ID_LEN)) {
        return NGX_ERROR;
    }

    op = ngx_mail_plus_queue_op_alloc(q, id, ngx_mail_plus_queue_load_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "claim";

    load->fd = NGX_INVALID_FILE;
    load->size = 0;
    ngx_str_null(&load->head);
    ngx_str_null(&load->state);

    op->load = load;
    op->finish = ngx_mail_plus_queue_load_finish;

    return ngx_mail_plus_queue_op_post(op, log);
}


static void
ngx_mail_plus_queue_scan_finish(ngx_mail_plus_queue_op_t *op)
{
    ngx_log_debug5(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "queue: scan found %ui due%s, %ui waiting for their "
                   "destination, next at %T, %ui claims taken back",
                   op->due->nids, op->due->more ? " and more" : "",
                   op->due->waiting, op->due->next, op->due->reclaimed);

    if (op->due->reclaimed) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "queue: %ui messages taken back from gone processes",
                      op->due->reclaimed);
    }
}


/*
 * the claim: incoming/<ID>, deferred/<bucket>/<ID> or deferred/<ID> to
 * active/<ID>.<pid>, then
 * the file is opened and read; no pool, no log: it may run in a thread
 */

static void
ngx_mail_plus_queue_load_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                       from[NGX_MAX_PATH], to[NGX_MAX_PATH];
    ngx_fd_t                     fd;
    ngx_file_info_t              fi;
    ngx_mail_plus_queue_t       *q;
    ngx_mail_plus_queue_load_t  *load;

    q = op->queue;
    load = op->load;

    if (load->which == NGX_MAIL_PLUS_QUEUE_INCOMING) {
        (void) ngx_sprintf(from, "%V/incoming/%s%Z", &q->path, op->id);

    } else if (load->bucket && load->bucket[0]) {
        (void) ngx_sprintf(from, "%V/deferred/%s/%s%Z", &q->path,
                           load->bucket, op->id);

    } else {
        (void) ngx_sprintf(from, "%V/deferred/%s%Z", &q->path, op->id);
    }

    (void) ngx_mail_plus_queue_active_name(q, op->id, to);

    if (rename((char *) from, (char *) to) == -1) {
        if (ngx_errno != NGX_ENOENT) {
            op->err = ngx_errno;
            op->failed = "rename() of a queue file to active/";
        }

        return;
    }

    fd = open((char *) to, O_RDONLY);

    if (fd == -1) {
        op->err = ngx_errno;
        op->failed = "open() of a claimed queue file";

        /* left to the next start, or to a reclaim */

        (void) rename((char *) to, (char *) from);
        return;
    }

    load->fd = fd;

    if (fstat(fd, &fi) == -1) {
        op->err = ngx_errno;
        op->failed = "fstat() of a claimed queue file";
        return;
    }

    load->size = fi.st_size;

    if (load->size == 0) {
        return;
    }

    load->head.data = ngx_mail_plus_queue_read_envelope(fd, load->size,
                                                         &load->head.len,
                                                         &op->err);
    if (load->head.data == NULL) {
        op->failed = "pread() of a claimed queue file";
        return;
    }

    load->state.data = ngx_mail_plus_queue_read_state(q, op->id,
                                                      &load->state.len,
                                                      &op->err);
    if (op->err) {
        free(load->head.data);
        ngx_str_null(&load->head);
        op->failed = "read of a state file";
    }
}


/*
 * the start of a queue file, up to its "end" line at least: read in
 * growing pieces, up to 64 MB; malloc()ed, as in a thread
 */

static u_char *
ngx_mail_plus_queue_read_envelope(ngx_fd_t fd, off_t size, size_t *len,
    ngx_err_t *err)
{
    u_char   *buf, *nbuf;
    size_t    want;
    ssize_t   n;

    want = 8192;
    buf = NULL;

    for ( ;; ) {
        want = (size_t) ngx_min((off_t) want, size);

        nbuf = realloc(buf, want);
        if (nbuf == NULL) {
            *err = NGX_ENOMEM;
            free(buf);
            return NULL;
        }

        buf = nbuf;

        n = pread(fd, buf, want, 0);

        if (n < 0) {
            *err = ngx_errno;
            free(buf);
            return NULL;
        }

        *len = n;

        if ((size_t) n < want
            || (off_t) want >= size
            || want >= NGX_MAIL_PLUS_QUEUE_ENVELOPE_MAX
            || ngx_strlcasestrn(buf, buf + n, (u_char *) CRLF "end" CRLF, 6))
        {
            return buf;
        }

        want = ngx_min(want * 4, NGX_MAIL_PLUS_QUEUE_ENVELOPE_MAX);
    }
}


/* the state file, malloc()ed: NULL with no error when there is none */

static u_char *
ngx_mail_plus_queue_read_state(ngx_mail_plus_queue_t *q, u_char *id,
    size_t *len, ngx_err_t *err)
{
    u_char           *buf, path[NGX_MAX_PATH];
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    *len = 0;

    (void) ngx_sprintf(path, "%V/state/%s%Z", &q->path, id);

    fd = open((char *) path, O_RDONLY);

    if (fd == -1) {
        if (ngx_errno != NGX_ENOENT) {
            *err = ngx_errno;
        }

        return NULL;
    }

    if (fstat(fd, &fi) == -1) {
        *err = ngx_errno;
        (void) close(fd);
        return NULL;
    }

    if (fi.st_size > NGX_MAIL_PLUS_QUEUE_STATE_MAX || fi.st_size == 0) {
        if (fi.st_size) {
            *err = EFBIG;
        }

        (void) close(fd);
        return NULL;
    }

    buf = malloc(fi.st_size);
    if (buf == NULL) {
        *err = NGX_ENOMEM;
        (void) close(fd);
        return NULL;
    }

    n = pread(fd, buf, fi.st_size, 0);

    if (n < 0) {
        *err = ngx_errno;
        (void) close(fd);
        free(buf);
        return NULL;
    }

    (void) close(fd);

    *len = n;

    return buf;
}


/* the buffers read in the thread live as long as the caller's pool */

static void
ngx_mail_plus_queue_load_finish(ngx_mail_plus_queue_op_t *op)
{
    ngx_pool_cleanup_t  *cln;

    ngx_log_debug5(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "queue: message %s %s, fd:%d, %O bytes, %uz of state",
                   op->id, op->load->fd == NGX_INVALID_FILE ? "not claimed"
                                                            : "claimed",
                   op->load->fd, op->load->size, op->load->state.len);

    if (op->load->head.data == NULL && op->load->state.data == NULL) {
        return;
    }

    cln = ngx_pool_cleanup_add(op->pool, 0);

    if (cln) {
        cln->handler = ngx_mail_plus_queue_load_free;
        cln->data = op->load;
        return;
    }

    ngx_mail_plus_queue_load_free(op->load);
    ngx_str_null(&op->load->head);
    ngx_str_null(&op->load->state);
}


static void
ngx_mail_plus_queue_load_free(void *data)
{
    ngx_mail_plus_queue_load_t  *load = data;

    free(load->head.data);
    free(load->state.data);
}


ngx_mail_plus_queue_reader_t *
ngx_mail_plus_queue_reader(ngx_mail_plus_queue_t *q, size_t size,
    ngx_log_t *log)
{
    ngx_mail_plus_queue_reader_t  *rd;

    rd = ngx_calloc(sizeof(ngx_mail_plus_queue_reader_t) + size, log);
    if (rd == NULL) {
        return NULL;
    }

    rd->queue = q;
    rd->log = ngx_cycle->log;
    rd->fd = NGX_INVALID_FILE;
    rd->buf = (u_char *) (rd + 1);
    rd->len = size;

#if (NGX_THREADS)
    rd->task.ctx = rd;
    rd->task.handler = ngx_mail_plus_queue_read_thread;
    rd->task.event.data = rd;
    rd->task.event.handler = ngx_mail_plus_queue_read_done;
#else
    rd->event.data = rd;
    rd->event.handler = ngx_mail_plus_queue_read_done;
    rd->event.log = rd->log;
#endif

    return rd;
}


/*
 * NGX_AGAIN: the handler is called from the event loop with the bytes
 * read; NGX_BUSY: the thread pool cannot take it now; NGX_ERROR
 */

ngx_int_t
ngx_mail_plus_queue_read(ngx_mail_plus_queue_reader_t *rd, ngx_fd_t fd,
    off_t offset, size_t len, ngx_mail_plus_queue_read_pt handler,
    void *data)
{
    if (rd->busy || len > rd->len) {
        return NGX_ERROR;
    }

    rd->fd = dup(fd);

    if (rd->fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, ngx_errno, "dup() failed");
        return NGX_ERROR;
    }

    rd->offset = offset;
    rd->n = len;
    rd->err = 0;
    rd->handler = handler;
    rd->data = data;

#if (NGX_THREADS)

    if (ngx_thread_task_post(rd->queue->thread_pool, &rd->task) != NGX_OK) {
        (void) close(rd->fd);
        rd->fd = NGX_INVALID_FILE;

        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "queue thread pool is busy, read postponed");
        return NGX_BUSY;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, rd->log, 0,
                   "queue: read of %uz bytes at %O posted to the thread pool",
                   len, offset);

    rd->busy = 1;

    return NGX_AGAIN;

#else

    /* no threads: read in place, the handler is called from the loop */

    ngx_mail_plus_queue_read_run(rd);

    rd->busy = 1;
    ngx_post_event(&rd->event, &ngx_posted_events);

    return NGX_AGAIN;

#endif
}


void
ngx_mail_plus_queue_reader_free(ngx_mail_plus_queue_reader_t *rd)
{
    if (rd->busy) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, rd->log, 0,
                       "queue reader orphaned while a read is in flight");
        rd->orphan = 1;
        return;
    }

    ngx_free(rd);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_read_run(ngx_mail_plus_queue_reader_t *rd)
{
    rd->n = pread(rd->fd, rd->buf, rd->n, rd->offset);

    if (rd->n == -1) {
        rd->err = ngx_errno;
    }

    (void) close(rd->fd);
    rd->fd = NGX_INVALID_FILE;
}


#if (NGX_THREADS)

static void
ngx_mail_plus_queue_read_thread(void *data, ngx_log_t *log)
{
    ngx_mail_plus_queue_read_run(data);
}

#endif


static void
ngx_mail_plus_queue_read_done(ngx_event_t *ev)
{
    ngx_mail_plus_queue_reader_t  *rd = ev->data;

    rd->busy = 0;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, rd->log, rd->err,
                   "queue: read done, %z bytes at %O%s", rd->n, rd->offset,
                   rd->orphan ? ", orphaned" : "");

    if (rd->orphan) {
        ngx_free(rd);
        return;
    }

    rd->handler(rd->data, rd->buf, rd->n, rd->err);
}


/*
 * NGX_AGAIN: the handler is called from the event loop when it is done;
 * NGX_BUSY: the thread pool cannot take it now (its queue is full), try
 * again later; NGX_ERROR: no memory
 */

ngx_int_t
ngx_mail_plus_queue_defer(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_str_t *state, time_t next, uint32_t key,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool,
    ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, id, ngx_mail_plus_queue_defer_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "deferral";

    op->state = *state;
    op->next = next;

    /* a slot for every so many deferrals of the worker: buckets stay small */

    ngx_mail_plus_queue_bucket(op->bucket, next, ngx_time(), key,
                               ((ngx_pid & 0xffff) << 16)
                               | ((q->deferrals++
                                   / NGX_MAIL_PLUS_QUEUE_SLOT_SIZE)
                                  & 0xffff));
    op->bucket[NGX_MAIL_PLUS_QUEUE_BUCKET_LEN] = '\0';

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, log, 0,
                   "queue: message %s to defer until %T, deferred/%s/, "
                   "%uz bytes of state", id, next, op->bucket, state->len);

    return ngx_mail_plus_queue_op_post(op, log);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_defer_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                 temp[NGX_MAX_PATH], path[NGX_MAX_PATH];
    ssize_t                n;
    ngx_fd_t               fd;
    struct timeval         tv[2];
    ngx_mail_plus_queue_t *q;

    q = op->queue;

    if (op->state.len) {
        (void) ngx_sprintf(temp, "%V/state/%s.%P%Z", &q->path, op->id,
                           ngx_pid);
        (void) ngx_sprintf(path, "%V/state/%s%Z", &q->path, op->id);

        fd = open((char *) temp, O_WRONLY|O_CREAT|O_TRUNC, 0600);

        if (fd == -1) {
            op->err = ngx_errno;
            op->failed = "open() of a state file";
            return;
        }

        n = write(fd, op->state.data, op->state.len);

        if (n != (ssize_t) op->state.len || fsync(fd) == -1) {
            op->err = ngx_errno;
            op->failed = "write() of a state file";
            (void) close(fd);
            (void) unlink((char *) temp);
            return;
        }

        (void) close(fd);

        if (rename((char *) temp, (char *) path) == -1) {
            op->err = ngx_errno;
            op->failed = "rename() of a state file";
            (void) unlink((char *) temp);
            return;
        }
    }

    (void) ngx_mail_plus_queue_active_name(q, op->id, temp);
    (void) ngx_sprintf(path, "%V/deferred/%s/%s%Z", &q->path, op->bucket,
                       op->id);

    tv[0].tv_sec = op->next;
    tv[0].tv_usec = 0;
    tv[1] = tv[0];

    if (utimes((char *) temp, tv) == -1) {
        op->err = ngx_errno;
        op->failed = "utimes() of a queue file";
    }

    if (rename((char *) temp, (char *) path) == 0) {
        return;
    }

    if (ngx_errno != NGX_ENOENT) {
        op->err = ngx_errno;
        op->failed = "rename() of a queue file to deferred/";
        return;
    }

    /*
     * the bucket is not there yet, or a scan has just removed it as
     * empty: it is made, and the rename tried again
     */

    (void) ngx_sprintf(path, "%V/deferred/%s%Z", &q->path, op->bucket);

    if (mkdir((char *) path, 0700) == -1 && ngx_errno != NGX_EEXIST) {
        op->err = ngx_errno;
        op->failed = "mkdir() of a bucket of deferred/";
        return;
    }

    (void) ngx_sprintf(path, "%V/deferred/%s/%s%Z", &q->path, op->bucket,
                       op->id);

    if (rename((char *) temp, (char *) path) == -1) {
        op->err = ngx_errno;
        op->failed = "rename() of a queue file to deferred/";
    }
}


/*
 * a claimed message that cannot be parsed is set aside in corrupt/, never
 * removed: its envelope cannot be trusted, so it is neither delivered nor
 * bounced; the reason is logged once, when it is there; the same results
 * as ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_corrupt(ngx_mail_plus_queue_t *q, u_char *id,
    char *reason, ngx_mail_plus_queue_defer_pt handler, void *data,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, id, ngx_mail_plus_queue_corrupt_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "move to corrupt/";

    op->reason = reason;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                   "queue: message %s to corrupt/: %s", id, reason);

    return ngx_mail_plus_queue_op_post(op, log);
}


/*
 * active/<ID>.<pid> to corrupt/<ID>, or to corrupt/<ID>.<seconds> if a
 * file of that ID is there already (one set aside before, re-queued and
 * set aside again): nothing in corrupt/ is ever replaced; then corrupt/
 * is fsynced; no pool, no log: it may run in a thread
 */

static void
ngx_mail_plus_queue_corrupt_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                 from[NGX_MAX_PATH], to[NGX_MAX_PATH];
    ngx_fd_t               fd;
    ngx_file_info_t        fi;
    ngx_mail_plus_queue_t *q;

    q = op->queue;

    (void) ngx_mail_plus_queue_active_name(q, op->id, from);
    (void) ngx_sprintf(to, "%V/corrupt/%s%Z", &q->path, op->id);

    /* only the process that claimed an ID moves it: no race here */

    if (stat((char *) to, &fi) == 0) {
        op->aside = ngx_time();
        (void) ngx_sprintf(to, "%V/corrupt/%s.%T%Z", &q->path, op->id,
                           op->aside);
    }

    if (rename((char *) from, (char *) to) == -1) {
        op->err = ngx_errno;
        op->failed = "rename() of a queue file to corrupt/";
        return;
    }

    (void) ngx_sprintf(to, "%V/corrupt%Z", &q->path);

    fd = open((char *) to, O_RDONLY|O_DIRECTORY);

    if (fd == -1 || fsync(fd) == -1) {
        op->err = ngx_errno;
        op->failed = "fsync() of corrupt/";
    }

    if (fd != -1) {
        (void) close(fd);
    }
}


/*
 * every recipient is done: the state file and the claimed file are
 * unlinked, in the thread pool; the same results as
 * ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_remove(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool,
    ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, id, ngx_mail_plus_queue_remove_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "removal";

    return ngx_mail_plus_queue_op_post(op, log);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_remove_run(ngx_mail_plus_queue_op_t *op)
{
    u_char  path[NGX_MAX_PATH];

    (void) ngx_sprintf(path, "%V/state/%s%Z", &op->queue->path, op->id);

    if (unlink((char *) path) == -1 && ngx_errno != NGX_ENOENT) {
        op->err = ngx_errno;
        op->failed = "unlink() of a state file";
    }

    (void) ngx_mail_plus_queue_active_name(op->queue, op->id, path);

    if (unlink((char *) path) == -1) {
        op->err = ngx_errno;
        op->failed = "unlink() of a delivered queue file";
    }
}


/* a claimed message not attempted (a worker going away) */

ngx_int_t
ngx_mail_plus_queue_release(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_log_t *log)
{
    u_char  from[NGX_MAX_PATH], to[NGX_MAX_PATH];

    (void) ngx_mail_plus_queue_active_name(q, id, from);
    (void) ngx_sprintf(to, "%V/incoming/%*s%Z", &q->path,
                       (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, id);

    /* ENOENT: a deferral finished in a thread as the worker went away */

    if (ngx_rename_file(from, to) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_rename_file_n " \"%s\" to \"%s\" failed", from, to);
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                   "queue: message %*s released to incoming/",
                   (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, id);

    return NGX_OK;
}
