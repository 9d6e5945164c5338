
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue_spool.h"


/*
 * Adding messages: a message is written to tmp/ as it arrives; at the end
 * it is committed: fsync() of the file, rename() into incoming/, fsync()
 * of incoming/.  Commits run in a thread pool and are batched: while one
 * batch is in the thread, new commits wait for the next one, and a batch
 * costs a single fsync() of the directory however many messages it holds.
 * A bounce copies part of a claimed file into a new message.
 */


static ngx_int_t ngx_mail_plus_queue_file(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_msg_t *m, ngx_log_t *log);
static void ngx_mail_plus_queue_new_id(ngx_mail_plus_queue_t *q, u_char *id);
static void ngx_mail_plus_queue_start(ngx_mail_plus_queue_t *q);
static void ngx_mail_plus_queue_sync(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_msg_t *batch);
static void ngx_mail_plus_queue_done(ngx_mail_plus_queue_t *q);
static void ngx_mail_plus_queue_copy_run(ngx_mail_plus_queue_op_t *op);
#if (NGX_THREADS)
static void ngx_mail_plus_queue_fill(ngx_mail_plus_queue_t *q);
static void ngx_mail_plus_queue_fill_thread(void *data, ngx_log_t *log);
static void ngx_mail_plus_queue_fill_done(ngx_event_t *ev);
static void ngx_mail_plus_queue_thread(void *data, ngx_log_t *log);
static void ngx_mail_plus_queue_thread_done(ngx_event_t *ev);
#endif


/*
 * a new message: its ID (seconds, microseconds, pid, counter: sortable by
 * arrival and unique across workers and restarts), its temporary file and
 * its envelope
 */

ngx_mail_plus_queue_msg_t *
ngx_mail_plus_queue_open(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_envelope_t *env, ngx_log_t *log)
{
    u_char                     *p;
    size_t                      len;
    ngx_log_t                  *mlog;
    ngx_pool_t                 *pool;
    struct timeval              tv;
    ngx_mail_plus_queue_msg_t  *m;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    m = ngx_pcalloc(pool, sizeof(ngx_mail_plus_queue_msg_t));
    mlog = ngx_palloc(pool, sizeof(ngx_log_t));

    if (m == NULL || mlog == NULL) {
        m = NULL;
        goto failed;
    }

    /*
     * the message has a log of its own: a commit may end after the
     * session that made it is gone, and the session's log (and its
     * handler, which reads the session) with it; the connection number
     * stays in the lines
     */

    *mlog = *log;
    mlog->handler = NULL;
    mlog->data = NULL;
    mlog->action = NULL;

    pool->log = mlog;

    m->pool = pool;
    m->queue = q;
    m->log = mlog;
    m->fd = NGX_INVALID_FILE;

    ngx_gettimeofday(&tv);

    if (ngx_mail_plus_queue_file(q, m, log) != NGX_OK) {
        goto failed;
    }

    /* the envelope */

    p = ngx_pnalloc(pool, ngx_mail_plus_spool_envelope_size(env));
    if (p == NULL) {
        goto failed;
    }

    len = ngx_mail_plus_spool_envelope_write(p, m->id, tv.tv_sec, env,
                                             &m->body)
          - p;

    if (ngx_mail_plus_queue_write(m, p, len) != NGX_OK) {
        goto failed;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, log, 0,
                   "queue: message %s opened, fd:%d, %uz bytes of envelope",
                   m->id, m->fd, len);

    return m;

failed:

    if (m && m->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(m->fd);
        (void) ngx_delete_file(m->temp);
    }

    ngx_destroy_pool(pool);

    return NULL;
}


/* the message's ID and temporary file: one from the stock, or a new one */

static ngx_int_t
ngx_mail_plus_queue_file(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_msg_t *m, ngx_log_t *log)
{
    m->temp = ngx_pnalloc(m->pool, q->path.len + sizeof("/tmp/")
                                   + NGX_MAIL_PLUS_QUEUE_ID_LEN);
    m->name = ngx_pnalloc(m->pool, q->path.len + sizeof("/incoming/")
                                   + NGX_MAIL_PLUS_QUEUE_ID_LEN);
    if (m->temp == NULL || m->name == NULL) {
        return NGX_ERROR;
    }

    if (q->nstock) {
        q->nstock--;
        ngx_memcpy(m->id, q->stock[q->nstock].id, sizeof(m->id));
        m->fd = q->stock[q->nstock].fd;

    } else {
        ngx_mail_plus_queue_new_id(q, m->id);
    }

    (void) ngx_sprintf(m->temp, "%V/tmp/%s%Z", &q->path, m->id);
    (void) ngx_sprintf(m->name, "%V/incoming/%s%Z", &q->path, m->id);

#if (NGX_THREADS)
    ngx_mail_plus_queue_fill(q);
#endif

    if (m->fd != NGX_INVALID_FILE) {
        return NGX_OK;
    }

    m->fd = ngx_open_file(m->temp, NGX_FILE_WRONLY,
                          NGX_FILE_CREATE_OR_OPEN|O_EXCL, 0600);

    if (m->fd == NGX_INVALID_FILE) {
        m->err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, log, m->err,
                      ngx_open_file_n " \"%s\" failed", m->temp);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* seconds, microseconds, pid, counter: sortable, and unique across
 * the workers and restarts */

static void
ngx_mail_plus_queue_new_id(ngx_mail_plus_queue_t *q, u_char *id)
{
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    (void) ngx_sprintf(id, "%08XL%05XL%06XL%03XL%Z",
                       (uint64_t) tv.tv_sec & 0xffffffff,
                       (uint64_t) tv.tv_usec & 0xfffff,
                       (uint64_t) ngx_pid & 0xffffff,
                       (uint64_t) (q->counter++ & 0xfff));
}


#if (NGX_THREADS)

/* the stock is topped up when it is half empty */

static void
ngx_mail_plus_queue_fill(ngx_mail_plus_queue_t *q)
{
    ngx_uint_t          i;
    ngx_thread_task_t  *task;

    if (q->filling || q->nstock >= NGX_MAIL_PLUS_QUEUE_STOCK / 2) {
        return;
    }

    task = q->fill_task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool, 0);
        if (task == NULL) {
            return;
        }

        task->ctx = q;
        task->handler = ngx_mail_plus_queue_fill_thread;
        task->event.data = q;
        task->event.handler = ngx_mail_plus_queue_fill_done;

        q->fill_task = task;
    }

    q->nfill = NGX_MAIL_PLUS_QUEUE_STOCK - q->nstock;

    for (i = 0; i < q->nfill; i++) {
        ngx_mail_plus_queue_new_id(q, q->fill[i].id);
        q->fill[i].fd = NGX_INVALID_FILE;
    }

    if (ngx_thread_task_post(q->thread_pool, task) == NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                       "queue: stock of %ui files posted to the thread pool",
                       q->nfill);
        q->filling = 1;
    }
}


/* in the thread: no pool, no log */

static void
ngx_mail_plus_queue_fill_thread(void *data, ngx_log_t *log)
{
    ngx_mail_plus_queue_t *q = data;

    ngx_uint_t  i;
    u_char      path[NGX_MAX_PATH];

    for (i = 0; i < q->nfill; i++) {
        (void) ngx_sprintf(path, "%V/tmp/%s%Z", &q->path, q->fill[i].id);

        q->fill[i].fd = open((char *) path, O_WRONLY|O_CREAT|O_EXCL, 0600);

        if (q->fill[i].fd == -1) {
            q->fill[i].fd = NGX_INVALID_FILE;
            break;
        }
    }
}


static void
ngx_mail_plus_queue_fill_done(ngx_event_t *ev)
{
    ngx_mail_plus_queue_t *q = ev->data;

    ngx_uint_t  i;

    q->filling = 0;

    for (i = 0; i < q->nfill; i++) {
        if (q->fill[i].fd != NGX_INVALID_FILE
            && q->nstock < NGX_MAIL_PLUS_QUEUE_STOCK)
        {
            q->stock[q->nstock++] = q->fill[i];
            q->fill[i].fd = NGX_INVALID_FILE;
        }
    }

    q->nfill = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "queue: stock filled, %ui files in stock", q->nstock);
}

#endif


/* at the exit of a worker: the files in stock are removed */

void
ngx_mail_plus_queue_exit(ngx_mail_plus_queue_t *q)
{
    ngx_uint_t  i;
    u_char      path[NGX_MAX_PATH];

    /* the thread pool is gone already: a fill is done, if it was started */

#if (NGX_THREADS)

    for (i = 0; i < q->nfill; i++) {
        if (q->fill[i].fd != NGX_INVALID_FILE) {
            q->stock[q->nstock++] = q->fill[i];
        }
    }

    q->nfill = 0;

#endif

    for (i = 0; i < q->nstock; i++) {
        (void) ngx_close_file(q->stock[i].fd);

        (void) ngx_sprintf(path, "%V/tmp/%s%Z", &q->path, q->stock[i].id);
        (void) ngx_delete_file(path);
    }

    q->nstock = 0;
}


/*
 * plain write() in the event loop, as nginx writes its temporary files:
 * it lands in the page cache; only fsync() waits for the disk
 */

ngx_int_t
ngx_mail_plus_queue_write(ngx_mail_plus_queue_msg_t *m, u_char *data,
    size_t len)
{
    ssize_t  n;

    while (len) {
        n = write(m->fd, data, len);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            m->err = ngx_errno;

            ngx_log_error(NGX_LOG_CRIT, m->log, m->err,
                          "write() to \"%s\" failed", m->temp);
            return NGX_ERROR;
        }

        data += n;
        len -= n;
        m->offset += n;
    }

    return NGX_OK;
}


/* the body type found in the content: 8-bit data without BODY=8BITMIME */

ngx_int_t
ngx_mail_plus_queue_set_body(ngx_mail_plus_queue_msg_t *m, ngx_uint_t body)
{
    if (pwrite(m->fd, ngx_mail_plus_spool_body_value(body), 8, m->body)
        != 8)
    {
        m->err = ngx_errno;
        ngx_log_error(NGX_LOG_CRIT, m->log, m->err,
                      "pwrite() to \"%s\" failed", m->temp);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NGX_AGAIN: m->handler is called when the message is in incoming/ or
 * failed (m->err); the queue frees the message after the handler
 */

ngx_int_t
ngx_mail_plus_queue_commit(ngx_mail_plus_queue_msg_t *m)
{
    ngx_mail_plus_queue_t  *q;

    q = m->queue;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, m->log, 0,
                   "queue: message %s to commit, %O bytes", m->id, m->offset);

    m->pending = 1;
    m->next = NULL;

    *q->pending_last = m;
    q->pending_last = &m->next;

    if (q->batch == NULL) {
        ngx_mail_plus_queue_start(q);
    }

    return NGX_AGAIN;
}


/* a message that is not to be committed; one being committed still is */

void
ngx_mail_plus_queue_abort(ngx_mail_plus_queue_msg_t *m)
{
    if (m->pending) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, m->log, 0,
                       "queue: message %s cancelled while committed", m->id);
        m->cancelled = 1;
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, m->log, 0,
                   "queue: message %s aborted", m->id);

    if (m->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(m->fd);

        if (ngx_delete_file(m->temp) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_CRIT, m->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed", m->temp);
        }
    }

    ngx_destroy_pool(m->pool);
}


static void
ngx_mail_plus_queue_start(ngx_mail_plus_queue_t *q)
{
#if (NGX_THREADS)
    ngx_thread_task_t          *task;
    ngx_mail_plus_queue_msg_t  *m;
#endif

    q->batch = q->pending;
    q->pending = NULL;
    q->pending_last = &q->pending;

    if (q->batch == NULL) {
        return;
    }

#if (NGX_THREADS)

    task = q->task;

    if (task == NULL) {
        task = ngx_thread_task_alloc(ngx_cycle->pool, 0);

        if (task) {
            task->ctx = q;
            task->handler = ngx_mail_plus_queue_thread;
            task->event.data = q;
            task->event.handler = ngx_mail_plus_queue_thread_done;

            q->task = task;
        }
    }

    if (task && ngx_thread_task_post(q->thread_pool, task) == NGX_OK) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                       "queue: batch posted to the thread pool");
        return;
    }

    /*
     * the thread pool cannot take it (its queue is full): the batch is
     * not committed in the event loop, which an fsync() would stall for
     * every session of the worker; its messages fail with EAGAIN, a
     * temporary failure the clients are told to retry
     */

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "queue thread pool is busy, messages not committed");

    for (m = q->batch; m; m = m->next) {
        m->err = NGX_EAGAIN;

        if (m->fd != NGX_INVALID_FILE) {
            (void) ngx_close_file(m->fd);
            m->fd = NGX_INVALID_FILE;
        }

        (void) ngx_delete_file(m->temp);
    }

#else

    ngx_mail_plus_queue_sync(q, q->batch);

#endif

    /*
     * the handlers run from the event loop, never from within the session
     * that committed
     */

    q->done.log = ngx_cycle->log;
    ngx_post_event(&q->done, &ngx_posted_events);
}


/* in the thread: no pool, no log */

static void
ngx_mail_plus_queue_sync(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_msg_t *batch)
{
    ngx_fd_t                    fd;
    ngx_uint_t                  renamed;
    ngx_mail_plus_queue_msg_t  *m;

#if (NGX_LINUX)

    /*
     * the writeback of every file of the batch is started first, so that
     * the disk writes of the batch overlap; fsync() then waits for them
     */

    for (m = batch; m; m = m->next) {
        if (m->err == 0) {
            (void) sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
    }

#endif

    for (m = batch; m; m = m->next) {

        if (m->err == 0 && fsync(m->fd) == -1) {
            m->err = ngx_errno;
        }

        if (close(m->fd) == -1 && m->err == 0) {
            m->err = ngx_errno;
        }

        m->fd = NGX_INVALID_FILE;
    }

    renamed = 0;

    for (m = batch; m; m = m->next) {

        if (m->err == 0 && rename((char *) m->temp, (char *) m->name) == -1) {
            m->err = ngx_errno;
        }

        if (m->err) {
            (void) unlink((char *) m->temp);
            continue;
        }

        renamed++;
    }

    q->dir_err = 0;

    if (renamed == 0) {
        return;
    }

    fd = open((char *) q->incoming, O_RDONLY|O_DIRECTORY);

    if (fd == -1 || fsync(fd) == -1) {
        q->dir_err = ngx_errno;

        /* not durable: taken back, so that 452 tells the truth */

        for (m = batch; m; m = m->next) {
            if (m->err == 0) {
                m->err = q->dir_err;
                (void) unlink((char *) m->name);
            }
        }
    }

    if (fd != -1) {
        (void) close(fd);
    }
}


void
ngx_mail_plus_queue_done_handler(ngx_event_t *ev)
{
    ngx_mail_plus_queue_done(ev->data);
}


static void
ngx_mail_plus_queue_done(ngx_mail_plus_queue_t *q)
{
    ngx_mail_plus_queue_msg_t  *m, *next;

#if (NGX_DEBUG)
    {
    ngx_uint_t  n, failed;

    n = 0;
    failed = 0;

    for (m = q->batch; m; m = m->next) {
        n++;

        if (m->err) {
            failed++;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "queue: batch done, %ui messages, %ui failed", n, failed);
    }
#endif

    if (q->dir_err) {
        ngx_log_error(NGX_LOG_CRIT, ngx_cycle->log, q->dir_err,
                      "fsync() of \"%s\" failed", q->incoming);
    }

    for (m = q->batch; m; m = next) {
        next = m->next;

        m->pending = 0;

        if (m->err && m->err != NGX_EAGAIN) {
            ngx_log_error(NGX_LOG_CRIT, m->log, m->err,
                          "queue: message %s not committed", m->id);
        }

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, m->log, m->err,
                       "queue: message %s %s%s", m->id,
                       m->err ? "not committed" : "committed to incoming/",
                       m->cancelled ? ", cancelled" : "");

        if (!m->cancelled) {
            m->handler(m);
        }

        if (m->err == 0 && q->notify) {
            q->notify(q, m->id);
        }

        ngx_destroy_pool(m->pool);
    }

    q->batch = NULL;

    if (q->pending) {
        ngx_mail_plus_queue_start(q);
    }
}


#if (NGX_THREADS)

static void
ngx_mail_plus_queue_thread(void *data, ngx_log_t *log)
{
    ngx_mail_plus_queue_t *q = data;

    ngx_mail_plus_queue_sync(q, q->batch);
}


static void
ngx_mail_plus_queue_thread_done(ngx_event_t *ev)
{
    ngx_mail_plus_queue_done(ev->data);
}

#endif


/*
 * a bounce: "size" bytes of a claimed file from "offset" (with
 * "headers", only its header section, up to 64 KB) are appended to the
 * message m, in the thread pool; fd is dup()ed, so that the claimed file
 * may be closed meanwhile; m->err tells how it went; the same results as
 * ngx_mail_plus_queue_defer()
 */

ngx_int_t
ngx_mail_plus_queue_copy(ngx_mail_plus_queue_msg_t *m, ngx_fd_t fd,
    off_t offset, off_t size, ngx_uint_t headers,
    ngx_mail_plus_queue_defer_pt handler, void *data)
{
    ngx_int_t                  rc;
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(m->queue, m->id,
                                      ngx_mail_plus_queue_copy_run,
                                      handler, data, m->pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->name = "copy";

    op->fd = dup(fd);

    if (op->fd == NGX_INVALID_FILE) {
        m->err = ngx_errno;
        ngx_log_error(NGX_LOG_ALERT, m->log, m->err, "dup() failed");
        return NGX_ERROR;
    }

    op->copy = m;
    op->offset = offset;
    op->size = size;
    op->headers = headers;

    rc = ngx_mail_plus_queue_op_post(op, m->log);

    if (rc == NGX_BUSY) {
        (void) close(op->fd);
    }

    return rc;
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_copy_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                     *buf, *end;
    off_t                       offset, last;
    size_t                      len;
    ssize_t                     n, w;
    ngx_mail_plus_queue_msg_t  *m;

    m = op->copy;

    len = op->headers ? NGX_MAIL_PLUS_QUEUE_HEADERS_MAX
                      : NGX_MAIL_PLUS_QUEUE_COPY_CHUNK;

    buf = malloc(len);
    if (buf == NULL) {
        m->err = NGX_ENOMEM;
        goto done;
    }

    offset = op->offset;
    last = op->offset + op->size;

    while (offset < last) {
        len = (size_t) ngx_min(last - offset, (off_t) len);

        n = pread(op->fd, buf, len, offset);

        if (n <= 0) {
            m->err = n ? ngx_errno : EIO;
            break;
        }

        if (op->headers) {

            /* the header section, up to and with its empty line */

            end = ngx_strlcasestrn(buf, buf + n, (u_char *) CRLF CRLF, 3);

            if (end) {
                n = end + 2 - buf;
            }

            last = offset + n;
        }

        for (end = buf; n; end += w, n -= w) {
            w = write(m->fd, end, n);

            if (w == -1) {
                if (ngx_errno == NGX_EINTR) {
                    w = 0;
                    continue;
                }

                m->err = ngx_errno;
                goto done;
            }

            m->offset += w;
            offset += w;
        }
    }

done:

    free(buf);
    (void) close(op->fd);
    op->fd = NGX_INVALID_FILE;
}
