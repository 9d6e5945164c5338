
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_smtp.h"

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif


/*
 * The spool: the only code that touches spool files (docs/spool.md).
 *
 *   <spool>/tmp/<ID>       a message being received
 *   <spool>/incoming/<ID>  a message accepted, waiting for delivery
 *   <spool>/active/<ID>    a message claimed by a delivery
 *   <spool>/corrupt/<ID>   a file that cannot be parsed, set aside
 *
 * A message is written to tmp/ as it arrives; at the end it is committed:
 * fsync() of the file, rename() into incoming/, fsync() of incoming/.
 * Commits run in a thread pool and are batched: while one batch is in the
 * thread, new commits wait for the next one, and a batch costs a single
 * fsync() of the directory however many messages it holds.
 */


/*
 * Creating a file (a new inode) is the costliest step of a message for
 * the event loop, so each worker keeps a stock of empty temporary files,
 * made ahead in the thread pool; a message takes one, and the stock is
 * topped up when it runs low.  Without a file in stock, one is made in
 * place.
 */

#define NGX_MAIL_PLUS_QUEUE_STOCK  32


/* what is read of a claimed file, at most */

#define NGX_MAIL_PLUS_QUEUE_ENVELOPE_MAX  (64 * 1024 * 1024)
#define NGX_MAIL_PLUS_QUEUE_STATE_MAX     (16 * 1024 * 1024)
#define NGX_MAIL_PLUS_QUEUE_HEADERS_MAX   (64 * 1024)
#define NGX_MAIL_PLUS_QUEUE_COPY_CHUNK    (16 * 1024)


typedef struct {
    u_char                      id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_fd_t                    fd;
} ngx_mail_plus_queue_file_t;


struct ngx_mail_plus_queue_s {
    ngx_str_t                   path;
    u_char                     *incoming;     /* NUL-terminated */

    ngx_mail_plus_queue_msg_t  *pending;      /* for the next batch */
    ngx_mail_plus_queue_msg_t **pending_last;
    ngx_mail_plus_queue_msg_t  *batch;        /* in the thread */
    ngx_err_t                   dir_err;
    ngx_event_t                 done;         /* a batch done in place */

    ngx_uint_t                  counter;

    ngx_mail_plus_queue_file_t  stock[NGX_MAIL_PLUS_QUEUE_STOCK];
    ngx_uint_t                  nstock;

#if (NGX_THREADS)
    ngx_mail_plus_queue_file_t  fill[NGX_MAIL_PLUS_QUEUE_STOCK];
    ngx_uint_t                  nfill;
    ngx_uint_t                  filling;   /* unsigned  filling:1; */

    ngx_thread_pool_t          *thread_pool;
    ngx_thread_task_t          *task;
    ngx_thread_task_t          *fill_task;
#endif

    ngx_mail_plus_queue_notify_pt  notify;    /* a message committed */
};


char  *ngx_mail_plus_queue_dirs[] = {
    "incoming", "active", "deferred", "hold", "corrupt"
};


static ngx_int_t ngx_mail_plus_queue_mkdir(ngx_cycle_t *cycle, u_char *path);
static ngx_int_t ngx_mail_plus_queue_clean_tmp(ngx_cycle_t *cycle,
    ngx_mail_plus_queue_t *q, ngx_uint_t *removed);
static ngx_uint_t ngx_mail_plus_queue_count(u_char *dir);
static ngx_int_t ngx_mail_plus_queue_open_dir(u_char *path, ngx_dir_t *dir);
static ngx_int_t ngx_mail_plus_queue_valid_id(u_char *name, size_t len);
static void ngx_mail_plus_queue_new_id(ngx_mail_plus_queue_t *q, u_char *id);
static void ngx_mail_plus_queue_start(ngx_mail_plus_queue_t *q);
static void ngx_mail_plus_queue_sync(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_msg_t *batch);
static void ngx_mail_plus_queue_done(ngx_mail_plus_queue_t *q);
static void ngx_mail_plus_queue_done_handler(ngx_event_t *ev);
#if (NGX_THREADS)
static void ngx_mail_plus_queue_fill(ngx_mail_plus_queue_t *q);
static void ngx_mail_plus_queue_fill_thread(void *data, ngx_log_t *log);
static void ngx_mail_plus_queue_fill_done(ngx_event_t *ev);
static void ngx_mail_plus_queue_thread(void *data, ngx_log_t *log);
static void ngx_mail_plus_queue_thread_done(ngx_event_t *ev);
#endif


ngx_mail_plus_queue_t *
ngx_mail_plus_queue_create(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *thread_pool)
{
    ngx_mail_plus_queue_t  *q;

    q = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_queue_t));
    if (q == NULL) {
        return NULL;
    }

    q->path = *path;

    if (ngx_conf_full_name(cf->cycle, &q->path, 0) != NGX_OK) {
        return NULL;
    }

    q->incoming = ngx_pnalloc(cf->pool, q->path.len + sizeof("/incoming"));
    if (q->incoming == NULL) {
        return NULL;
    }

    ngx_sprintf(q->incoming, "%V/incoming%Z", &q->path);

    q->pending_last = &q->pending;

    q->done.handler = ngx_mail_plus_queue_done_handler;
    q->done.data = q;
    q->done.log = cf->cycle->log;

#if (NGX_THREADS)

    q->thread_pool = ngx_thread_pool_add(cf, thread_pool->len ? thread_pool
                                                              : NULL);
    if (q->thread_pool == NULL) {
        return NULL;
    }

#endif

    return q;
}


/*
 * at start and at each reload, in the master: the directories are made,
 * temporary files of processes that no longer run are removed, and the
 * messages found are counted
 */

ngx_int_t
ngx_mail_plus_queue_init(ngx_cycle_t *cycle, ngx_mail_plus_queue_t *q)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t   i, removed, incoming, active, held, corrupt;

    static char  *dirs[] = { "", "/tmp", "/incoming", "/active", "/hold",
                             "/corrupt", NULL };

    /* the longest name in it: corrupt/<ID>.<seconds> */

    if (q->path.len + sizeof("/corrupt/.") + NGX_MAIL_PLUS_QUEUE_ID_LEN
        + NGX_TIME_T_LEN > NGX_MAX_PATH)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "queue spool path \"%V\" is too long", &q->path);
        return NGX_ERROR;
    }

    for (i = 0; dirs[i]; i++) {
        (void) ngx_sprintf(path, "%V%s%Z", &q->path, dirs[i]);

        if (ngx_mail_plus_queue_mkdir(cycle, path) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_mail_plus_queue_clean_tmp(cycle, q, &removed) != NGX_OK) {
        return NGX_ERROR;
    }

    incoming = ngx_mail_plus_queue_count(q->incoming);

    (void) ngx_sprintf(path, "%V/active%Z", &q->path);
    active = ngx_mail_plus_queue_count(path);

    (void) ngx_sprintf(path, "%V/hold%Z", &q->path);
    held = ngx_mail_plus_queue_count(path);

    (void) ngx_sprintf(path, "%V/corrupt%Z", &q->path);
    corrupt = ngx_mail_plus_queue_count(path);

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "queue spool \"%V\": %ui messages incoming, %ui active, "
                  "%ui stale temporary files removed, %ui files in corrupt/, "
                  "%ui messages held", &q->path, incoming, active, removed,
                  corrupt, held);

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_queue_mkdir(ngx_cycle_t *cycle, u_char *path)
{
    ngx_file_info_t   fi;
    ngx_core_conf_t  *ccf;

    if (ngx_create_dir(path, 0700) == NGX_FILE_ERROR) {
        if (ngx_errno != NGX_EEXIST) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          ngx_create_dir_n " \"%s\" failed", path);
            return NGX_ERROR;
        }
    }

    if (geteuid() != 0) {
        return NGX_OK;
    }

    /* the workers write the spool */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_file_info_n " \"%s\" failed", path);
        return NGX_ERROR;
    }

    if (fi.st_uid != ccf->user && chown((char *) path, ccf->user, -1) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "chown(\"%s\", %d) failed", path, ccf->user);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_queue_clean_tmp(ngx_cycle_t *cycle, ngx_mail_plus_queue_t *q,
    ngx_uint_t *removed)
{
    u_char      *name, path[NGX_MAX_PATH];
    size_t       len;
    ngx_int_t    pid;
    ngx_dir_t    dir;

    *removed = 0;

    (void) ngx_sprintf(path, "%V/tmp%Z", &q->path);

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      ngx_open_dir_n " \"%s\" failed", path);
        return NGX_ERROR;
    }

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&dir) == NGX_ERROR) {
            break;
        }

        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (name[0] == '.') {
            continue;
        }

        /* a file of a running process (a reload) is left alone */

        if (ngx_mail_plus_queue_valid_id(name, len)) {
            pid = ngx_hextoi(name + 13, 6);

            if (pid > 0 && (kill(pid, 0) == 0 || ngx_errno == NGX_EPERM)) {
                continue;
            }
        }

        if (q->path.len + len + sizeof("/tmp/") > NGX_MAX_PATH) {
            continue;
        }

        (void) ngx_sprintf(path, "%V/tmp/%*s%Z", &q->path, len, name);

        if (ngx_delete_file(path) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed", path);
            continue;
        }

        (*removed)++;
    }

    (void) ngx_close_dir(&dir);

    return NGX_OK;
}


/* the names that begin with a queue ID: <ID>, <ID>.<pid>, <ID>.<seconds> */

static ngx_uint_t
ngx_mail_plus_queue_count(u_char *path)
{
    ngx_dir_t   dir;
    ngx_uint_t  n;

    if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
        return 0;
    }

    n = 0;

    while (ngx_read_dir(&dir) == NGX_OK) {
        if (ngx_de_namelen(&dir) >= NGX_MAIL_PLUS_QUEUE_ID_LEN
            && ngx_mail_plus_queue_valid_id(ngx_de_name(&dir),
                                            NGX_MAIL_PLUS_QUEUE_ID_LEN))
        {
            n++;
        }
    }

    (void) ngx_close_dir(&dir);

    return n;
}


static ngx_int_t
ngx_mail_plus_queue_open_dir(u_char *path, ngx_dir_t *dir)
{
    ngx_str_t  name;

    name.data = path;
    name.len = ngx_strlen(path);

    return ngx_open_dir(&name, dir);
}


/* an ID: 22 upper case hex digits */

static ngx_int_t
ngx_mail_plus_queue_valid_id(u_char *name, size_t len)
{
    size_t  i;

    if (len != NGX_MAIL_PLUS_QUEUE_ID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((name[i] >= '0' && name[i] <= '9')
              || (name[i] >= 'A' && name[i] <= 'F')))
        {
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ngx_mail_plus_queue_is_id(u_char *name, size_t len)
{
    return ngx_mail_plus_queue_valid_id(name, len);
}


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
    ngx_str_t                  *rcpt, *dsn;
    ngx_uint_t                  i;
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

    m->temp = ngx_pnalloc(pool, q->path.len + sizeof("/tmp/")
                                + NGX_MAIL_PLUS_QUEUE_ID_LEN);
    m->name = ngx_pnalloc(pool, q->path.len + sizeof("/incoming/")
                                + NGX_MAIL_PLUS_QUEUE_ID_LEN);
    if (m->temp == NULL || m->name == NULL) {
        goto failed;
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

    if (m->fd == NGX_INVALID_FILE) {
        m->fd = ngx_open_file(m->temp, NGX_FILE_WRONLY,
                              NGX_FILE_CREATE_OR_OPEN|O_EXCL, 0600);

        if (m->fd == NGX_INVALID_FILE) {
            m->err = ngx_errno;
            ngx_log_error(NGX_LOG_CRIT, log, m->err,
                          ngx_open_file_n " \"%s\" failed", m->temp);
            goto failed;
        }
    }

    /* the envelope */

    len = sizeof("MAILPLUS-QUEUE 1" CRLF) - 1
          + sizeof("id " CRLF) - 1 + NGX_MAIL_PLUS_QUEUE_ID_LEN
          + sizeof("arrival " CRLF) - 1 + NGX_TIME_T_LEN
          + sizeof("client " CRLF) - 1 + env->client.len
          + sizeof("helo " CRLF) - 1 + env->helo.len
          + sizeof("login " CRLF) - 1 + env->login.len
          + sizeof("body 8BITMIME" CRLF) - 1 + 1
          + sizeof("smtputf8 yes" CRLF) - 1
          + sizeof("sender " CRLF) - 1 + env->sender.len
          + sizeof("end" CRLF) - 1;

    rcpt = env->recipients->elts;
    dsn = env->dsn ? env->dsn->elts : NULL;

    for (i = 0; i < env->recipients->nelts; i++) {
        len += sizeof("rcpt " CRLF) - 1 + rcpt[i].len;

        if (dsn) {
            len += sizeof("dsn " CRLF) - 1 + dsn[i].len;
        }
    }

    len += sizeof("ret " CRLF) - 1 + env->ret.len
           + sizeof("envid " CRLF) - 1 + env->envid.len;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        goto failed;
    }

    len = ngx_sprintf(p, "MAILPLUS-QUEUE 1" CRLF "id %s" CRLF
                      "arrival %T" CRLF "client %V" CRLF "helo %V" CRLF
                      "login %V" CRLF "body ",
                      m->id, tv.tv_sec, &env->client, &env->helo,
                      &env->login)
          - p;

    /* fixed width: the value may be corrected when the content is read */

    m->body = len;

    len = ngx_sprintf(p + len, "%s" CRLF "smtputf8 %s" CRLF "sender %V" CRLF,
                      env->body == NGX_MAIL_PLUS_BODY_8BITMIME
                      ? "8BITMIME" : "7BIT    ",
                      env->smtputf8 ? "yes" : "no", &env->sender)
          - p;

    /* RFC 3461 parameters, where the client gave them */

    if (env->ret.len) {
        len = ngx_sprintf(p + len, "ret %V" CRLF, &env->ret) - p;
    }

    if (env->envid.len) {
        len = ngx_sprintf(p + len, "envid %V" CRLF, &env->envid) - p;
    }

    for (i = 0; i < env->recipients->nelts; i++) {
        len = ngx_sprintf(p + len, "rcpt %V" CRLF, &rcpt[i]) - p;

        if (dsn && dsn[i].len) {
            len = ngx_sprintf(p + len, "dsn %V" CRLF, &dsn[i]) - p;
        }
    }

    len = ngx_cpymem(p + len, "end" CRLF, 5) - p;

    if (ngx_mail_plus_queue_write(m, p, len) != NGX_OK) {
        goto failed;
    }

    return m;

failed:

    if (m && m->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(m->fd);
        (void) ngx_delete_file(m->temp);
    }

    ngx_destroy_pool(pool);

    return NULL;
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
    char  *value;

    value = (body == NGX_MAIL_PLUS_BODY_8BITMIME) ? "8BITMIME" : "7BIT    ";

    if (pwrite(m->fd, value, 8, m->body) != 8) {
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
        m->cancelled = 1;
        return;
    }

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
                       "queue batch posted to the thread pool");
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


static void
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
                   "queue batch: %ui messages, %ui failed", n, failed);
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
 * The delivery's part of the spool (docs/spool.md):
 *
 *   <spool>/active/<ID>.<pid>  a message claimed by the worker <pid>
 *   <spool>/deferred/<ID>      waiting for a retry; its mtime is the time
 *                              of the next attempt
 *   <spool>/state/<ID>         recipients done or failed, attempts so far
 *
 * A claim is a rename() into active/ with the pid of the claiming worker
 * in the name: a claim whose process no longer runs is taken back into
 * incoming/ (at-least-once: a duplicate is possible, a loss is not).
 */


static ngx_int_t ngx_mail_plus_queue_active_name(ngx_mail_plus_queue_t *q,
    u_char *id, u_char *path);


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

    (void) ngx_sprintf(path, "%V/deferred%Z", &q->path);

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "queue spool \"%V\": %ui messages deferred, "
                  "%ui claims of gone processes taken back",
                  &q->path, ngx_mail_plus_queue_count(path), n);

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


static ngx_int_t
ngx_mail_plus_queue_active_name(ngx_mail_plus_queue_t *q, u_char *id,
    u_char *path)
{
    (void) ngx_sprintf(path, "%V/active/%*s.%P%Z", &q->path,
                       (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, id, ngx_pid);

    return NGX_OK;
}


/*
 * Moves of a claimed message that must be durable run in the thread pool
 * when there is one: a deferral (a new state file, written aside, fsynced
 * and renamed into place, then the queue file's mtime set to the next
 * attempt and the file renamed into deferred/), and the move of a corrupt
 * file into corrupt/ (a rename, then an fsync() of corrupt/).
 */

typedef struct ngx_mail_plus_queue_op_s  ngx_mail_plus_queue_op_t;

typedef void (*ngx_mail_plus_queue_op_pt)(ngx_mail_plus_queue_op_t *op);

struct ngx_mail_plus_queue_op_s {
    ngx_mail_plus_queue_t          *queue;
    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_mail_plus_queue_op_pt       run;
    ngx_str_t                       state;    /* a deferral */
    ngx_uint_t                     *sizes;    /* a count of the spool */
    time_t                          next;
    ngx_mail_plus_queue_list_t     *list;     /* a listing */
    ngx_mail_plus_queue_admin_t    *admin;    /* an operation of the API */
    char                           *reason;   /* a corrupt file */
    time_t                          aside;    /* corrupt/<ID>.<aside> */
    ngx_err_t                       err;
    char                           *failed;   /* the call that failed */
    ngx_mail_plus_queue_due_t      *due;      /* a scan */
    ngx_mail_plus_queue_load_t     *load;     /* a claim and its reads */
    ngx_mail_plus_queue_msg_t      *copy;     /* a bounce: copied into */
    ngx_fd_t                        fd;       /*   from, a dup() */
    off_t                           offset;
    off_t                           size;
    ngx_uint_t                      headers;  /*   the header section */
    ngx_pool_t                     *pool;
    ngx_mail_plus_queue_defer_pt    handler;
    void                           *data;
#if (NGX_THREADS)
    ngx_thread_task_t              *task;
#else
    ngx_event_t                     event;
#endif
};


static ngx_mail_plus_queue_op_t *ngx_mail_plus_queue_op_alloc(
    ngx_mail_plus_queue_t *q, u_char *id, ngx_mail_plus_queue_op_pt run,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool);
static ngx_int_t ngx_mail_plus_queue_op_post(ngx_mail_plus_queue_op_t *op,
    ngx_log_t *log);
static void ngx_mail_plus_queue_defer_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_corrupt_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_sizes_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_list_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_admin_run(ngx_mail_plus_queue_op_t *op);
static ngx_int_t ngx_mail_plus_queue_entry(u_char *path,
    ngx_mail_plus_queue_entry_t *e);
static ngx_int_t ngx_mail_plus_queue_locate(ngx_mail_plus_queue_t *q,
    u_char *id, ngx_mail_plus_queue_admin_t *a, u_char *path);
static ngx_int_t ngx_mail_plus_queue_move(ngx_mail_plus_queue_op_t *op,
    ngx_uint_t from, ngx_uint_t to);
static ngx_int_t ngx_mail_plus_queue_delete(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_show(ngx_mail_plus_queue_op_t *op,
    u_char *path);
static ngx_int_t ngx_mail_plus_queue_sync_dir(ngx_mail_plus_queue_op_t *op,
    char *sub);
static void ngx_mail_plus_queue_scan_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_load_run(ngx_mail_plus_queue_op_t *op);
static u_char *ngx_mail_plus_queue_read_envelope(ngx_fd_t fd, off_t size,
    size_t *len, ngx_err_t *err);
static u_char *ngx_mail_plus_queue_read_state(ngx_mail_plus_queue_t *q,
    u_char *id, size_t *len, ngx_err_t *err);
static void ngx_mail_plus_queue_remove_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_copy_run(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_load_free(void *data);
static void ngx_mail_plus_queue_op_finish(ngx_mail_plus_queue_op_t *op);
static void ngx_mail_plus_queue_op_log(ngx_mail_plus_queue_op_t *op,
    ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_mail_plus_queue_op_thread(void *data, ngx_log_t *log);
#endif
static void ngx_mail_plus_queue_op_done(ngx_event_t *ev);


/*
 * NGX_AGAIN: the handler is called from the event loop when it is done;
 * NGX_BUSY: the thread pool cannot take it now (its queue is full), try
 * again later; NGX_ERROR: no memory
 */

ngx_int_t
ngx_mail_plus_queue_defer(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_str_t *state, time_t next, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op;

    op = ngx_mail_plus_queue_op_alloc(q, id, ngx_mail_plus_queue_defer_run,
                                      handler, data, pool);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->state = *state;
    op->next = next;

    return ngx_mail_plus_queue_op_post(op, log);
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

    op->reason = reason;

    return ngx_mail_plus_queue_op_post(op, log);
}


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

    op->sizes = sizes;

    return ngx_mail_plus_queue_op_post(op, log);
}


static ngx_mail_plus_queue_op_t *
ngx_mail_plus_queue_op_alloc(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_op_pt run, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool)
{
    ngx_mail_plus_queue_op_t  *op;
#if (NGX_THREADS)
    ngx_thread_task_t         *task;

    task = ngx_thread_task_alloc(pool, sizeof(ngx_mail_plus_queue_op_t));
    if (task == NULL) {
        return NULL;
    }

    op = task->ctx;
    op->task = task;

#else

    op = ngx_pcalloc(pool, sizeof(ngx_mail_plus_queue_op_t));
    if (op == NULL) {
        return NULL;
    }

#endif

    op->queue = q;
    op->pool = pool;
    op->fd = NGX_INVALID_FILE;

    if (id) {
        ngx_memcpy(op->id, id, NGX_MAIL_PLUS_QUEUE_ID_LEN);
    }
    op->run = run;
    op->handler = handler;
    op->data = data;

    return op;
}


static ngx_int_t
ngx_mail_plus_queue_op_post(ngx_mail_plus_queue_op_t *op, ngx_log_t *log)
{
#if (NGX_THREADS)
    ngx_thread_task_t  *task;

    task = op->task;

    task->handler = ngx_mail_plus_queue_op_thread;
    task->event.data = op;
    task->event.handler = ngx_mail_plus_queue_op_done;

    if (ngx_thread_task_post(op->queue->thread_pool, task) == NGX_OK) {
        return NGX_AGAIN;
    }

    /*
     * the thread pool cannot take it: the caller tries again later; the
     * spool's I/O is never done in the event loop instead
     */

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "queue thread pool is busy, operation postponed");

    return NGX_BUSY;

#else

    /* no threads: done in place, the handler is called from the loop */

    op->run(op);

    op->event.data = op;
    op->event.handler = ngx_mail_plus_queue_op_done;
    op->event.log = log;

    ngx_post_event(&op->event, &ngx_posted_events);

    return NGX_AGAIN;

#endif
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
    (void) ngx_sprintf(path, "%V/deferred/%s%Z", &q->path, op->id);

    tv[0].tv_sec = op->next;
    tv[0].tv_usec = 0;
    tv[1] = tv[0];

    if (utimes((char *) temp, tv) == -1) {
        op->err = ngx_errno;
        op->failed = "utimes() of a queue file";
    }

    if (rename((char *) temp, (char *) path) == -1) {
        op->err = ngx_errno;
        op->failed = "rename() of a queue file to deferred/";
    }
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


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_sizes_run(ngx_mail_plus_queue_op_t *op)
{
    u_char      path[NGX_MAX_PATH];
    ngx_uint_t  i;

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {
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

    op->list = list;

    return ngx_mail_plus_queue_op_post(op, log);
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

    op->admin = a;
    a->result = NGX_ERROR;

    return ngx_mail_plus_queue_op_post(op, log);
}


/*
 * the delivery's scan, in the thread pool: claims of gone processes are
 * taken back, then up to due->nalloc queue IDs are found, those of
 * incoming/ first, then those of deferred/ whose mtime (the time of the
 * next attempt) is not later than due->now; the same results as
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

    due->nids = 0;
    due->reclaimed = 0;

    op->due = due;

    return ngx_mail_plus_queue_op_post(op, log);
}


/*
 * a claim of incoming/<ID> or deferred/<ID> (load->which), then its
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

    load->fd = NGX_INVALID_FILE;
    load->size = 0;
    ngx_str_null(&load->head);
    ngx_str_null(&load->state);

    op->load = load;

    return ngx_mail_plus_queue_op_post(op, log);
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

    return ngx_mail_plus_queue_op_post(op, log);
}


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
ngx_mail_plus_queue_scan_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                     *name, path[NGX_MAX_PATH];
    size_t                      len;
    ngx_dir_t                   dir;
    ngx_uint_t                  i;
    ngx_file_info_t             fi;
    ngx_mail_plus_queue_due_t  *due;

    static ngx_uint_t  which[] = { NGX_MAIL_PLUS_QUEUE_INCOMING,
                                   NGX_MAIL_PLUS_QUEUE_DEFERRED };
    static char       *dirs[] = { "incoming", "deferred" };

    due = op->due;

    due->reclaimed = ngx_mail_plus_queue_reclaim(op->queue, NULL);

    for (i = 0; i < 2 && due->nids < due->nalloc; i++) {

        (void) ngx_sprintf(path, "%V/%s%Z", &op->queue->path, dirs[i]);

        if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
            op->err = ngx_errno;
            op->failed = "opendir() of a spool directory";
            continue;
        }

        while (due->nids < due->nalloc && ngx_read_dir(&dir) == NGX_OK) {
            name = ngx_de_name(&dir);
            len = ngx_de_namelen(&dir);

            if (!ngx_mail_plus_queue_valid_id(name, len)) {
                continue;
            }

            if (which[i] == NGX_MAIL_PLUS_QUEUE_DEFERRED) {
                (void) ngx_sprintf(path, "%V/deferred/%*s%Z",
                                   &op->queue->path, len, name);

                if (ngx_file_info(path, &fi) == NGX_FILE_ERROR
                    || ngx_file_mtime(&fi) > due->now)
                {
                    continue;
                }
            }

            ngx_memcpy(due->ids[due->nids].id, name, len);
            due->ids[due->nids].id[len] = '\0';
            due->ids[due->nids].which = which[i];
            due->nids++;
        }

        (void) ngx_close_dir(&dir);
    }
}


/*
 * the claim: incoming/<ID> or deferred/<ID> to active/<ID>.<pid>, then
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

    (void) ngx_sprintf(from, "%V/%s/%s%Z", &q->path,
                       load->which == NGX_MAIL_PLUS_QUEUE_INCOMING
                       ? "incoming" : "deferred", op->id);

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


static void ngx_mail_plus_queue_read_run(ngx_mail_plus_queue_reader_t *rd);
#if (NGX_THREADS)
static void ngx_mail_plus_queue_read_thread(void *data, ngx_log_t *log);
#endif
static void ngx_mail_plus_queue_read_done(ngx_event_t *ev);


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

    if (rd->orphan) {
        ngx_free(rd);
        return;
    }

    rd->handler(rd->data, rd->buf, rd->n, rd->err);
}


/* no pool, no log: it may run in a thread */

static void
ngx_mail_plus_queue_list_run(ngx_mail_plus_queue_op_t *op)
{
    u_char                       *name, path[NGX_MAX_PATH];
    size_t                        len;
    ngx_dir_t                     dir;
    ngx_uint_t                    i;
    ngx_mail_plus_queue_list_t   *list;
    ngx_mail_plus_queue_entry_t  *e;

    list = op->list;

    for (i = 0; i < NGX_MAIL_PLUS_QUEUE_NSIZES; i++) {
        (void) ngx_sprintf(path, "%V/%s%Z", &op->queue->path,
                           ngx_mail_plus_queue_dirs[i]);

        if (ngx_mail_plus_queue_open_dir(path, &dir) == NGX_ERROR) {
            continue;
        }

        while (ngx_read_dir(&dir) == NGX_OK) {
            name = ngx_de_name(&dir);
            len = ngx_de_namelen(&dir);

            /* <ID>, <ID>.<pid> in active/, <ID>.<seconds> in corrupt/ */

            if (len < NGX_MAIL_PLUS_QUEUE_ID_LEN
                || len > NGX_MAIL_PLUS_QUEUE_ID_LEN + 1 + NGX_INT64_LEN
                || !ngx_mail_plus_queue_valid_id(name,
                                                 NGX_MAIL_PLUS_QUEUE_ID_LEN)
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
            e->where = i;

            (void) ngx_sprintf(path, "%V/%s/%*s%Z", &op->queue->path,
                               ngx_mail_plus_queue_dirs[i], len, name);

            if (ngx_mail_plus_queue_entry(path, e) != NGX_OK) {
                list->total--;      /* gone meanwhile */
                continue;
            }

            list->nentries++;
        }

        (void) ngx_close_dir(&dir);
    }
}


/*
 * the envelope lines a listing shows, read in pieces: no more memory than
 * the buffer, however many recipients there are
 */

static ngx_int_t
ngx_mail_plus_queue_entry(u_char *path, ngx_mail_plus_queue_entry_t *e)
{
    u_char           *p, *eol, *end, *last, buf[4096];
    off_t             offset;
    size_t            len;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

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

            if (end - p == 3 && ngx_strncmp(p, "end", 3) == 0) {
                e->envelope = 1;
                goto done;
            }

            if (end - p >= 7 && ngx_strncmp(p, "sender ", 7) == 0) {
                e->sender_len = ngx_min((size_t) (end - p - 7),
                                        sizeof(e->sender));
                ngx_memcpy(e->sender, p + 7, e->sender_len);

            } else if (end - p > 5 && ngx_strncmp(p, "rcpt ", 5) == 0) {
                e->recipients++;

            } else if (end - p > 8 && ngx_strncmp(p, "arrival ", 8) == 0) {
                e->arrival = ngx_atotm(p + 8, end - p - 8);
            }
        }

        len = last - p;

        if (len == sizeof(buf)) {
            break;          /* longer than any envelope line */
        }

        ngx_memmove(buf, p, len);
    }

done:

    (void) ngx_close_file(fd);

    return NGX_OK;
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

    (void) ngx_sprintf(src, "%V/%s/%s%Z", &op->queue->path,
                       ngx_mail_plus_queue_dirs[from], op->id);
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
        (void) ngx_sprintf(path, "%V/%s/%s%Z", &op->queue->path,
                           ngx_mail_plus_queue_dirs[from[i]], op->id);

        if (unlink((char *) path) == -1) {
            if (ngx_errno == NGX_ENOENT) {
                continue;
            }

            op->err = ngx_errno;
            op->failed = "unlink() of a queue file";
            return NGX_ERROR;
        }

        op->admin->where = from[i];

        if (ngx_mail_plus_queue_sync_dir(op, ngx_mail_plus_queue_dirs[from[i]])
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


/* a message released from hold/ is scheduled at once, like a new one */

static void
ngx_mail_plus_queue_op_finish(ngx_mail_plus_queue_op_t *op)
{
    ngx_pool_cleanup_t  *cln;

    if (op->due && op->due->reclaimed) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "queue: %ui messages taken back from gone processes",
                      op->due->reclaimed);
    }

    /* the buffers read in the thread live as long as the caller's pool */

    if (op->load && (op->load->head.data || op->load->state.data)) {
        cln = ngx_pool_cleanup_add(op->pool, 0);

        if (cln) {
            cln->handler = ngx_mail_plus_queue_load_free;
            cln->data = op->load;

        } else {
            ngx_mail_plus_queue_load_free(op->load);
            ngx_str_null(&op->load->head);
            ngx_str_null(&op->load->state);
        }
    }

    if (op->admin
        && op->admin->what == NGX_MAIL_PLUS_QUEUE_UNHOLD
        && op->admin->result == NGX_OK
        && op->queue->notify)
    {
        op->queue->notify(op->queue, op->id);
    }
}


static void
ngx_mail_plus_queue_load_free(void *data)
{
    ngx_mail_plus_queue_load_t  *load = data;

    free(load->head.data);
    free(load->state.data);
}


static void
ngx_mail_plus_queue_op_log(ngx_mail_plus_queue_op_t *op, ngx_log_t *log)
{
    if (op->failed && op->reason) {
        ngx_log_error(NGX_LOG_CRIT, log, op->err,
                      "queue: message %s is corrupt (%s), %s failed",
                      op->id, op->reason, op->failed);
        return;
    }

    if (op->failed) {
        ngx_log_error(NGX_LOG_CRIT, log, op->err,
                      "queue: message %s: %s failed", op->id, op->failed);
        return;
    }

    if (op->reason == NULL) {
        return;
    }

    if (op->aside) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "queue: message %s is corrupt (%s), moved to "
                      "corrupt/%s.%T", op->id, op->reason, op->id,
                      op->aside);

    } else {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "queue: message %s is corrupt (%s), moved to "
                      "corrupt/%s", op->id, op->reason, op->id);
    }
}


#if (NGX_THREADS)

static void
ngx_mail_plus_queue_op_thread(void *data, ngx_log_t *log)
{
    ngx_mail_plus_queue_op_t  *op = data;

    op->run(op);
}

#endif


static void
ngx_mail_plus_queue_op_done(ngx_event_t *ev)
{
    ngx_mail_plus_queue_op_t  *op = ev->data;

    ngx_mail_plus_queue_op_log(op, ngx_cycle->log);
    ngx_mail_plus_queue_op_finish(op);

    op->handler(op->data);
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

    return NGX_OK;
}
