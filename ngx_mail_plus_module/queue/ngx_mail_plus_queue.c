
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue_spool.h"


/*
 * The spool (docs/spool.md): its creation and start, the directories and
 * names of its files, and the operations run in its thread pool.
 *
 *   <spool>/tmp/<ID>           a message being received
 *   <spool>/incoming/<ID>      a message accepted, waiting for delivery
 *   <spool>/active/<ID>.<pid>  a message claimed by the worker <pid>
 *   <spool>/deferred/<bucket>/<ID>
 *                              waiting for a retry, in a bucket named by
 *                              its due time and destination
 *                              (ngx_mail_plus_queue_deferred.c)
 *   <spool>/state/<ID>         recipients done, attempts so far
 *   <spool>/hold/<ID>          held by the queue API
 *   <spool>/corrupt/<ID>       a file that cannot be parsed, set aside
 *
 * Adding messages is in ngx_mail_plus_queue_add.c, the delivery's side in
 * ngx_mail_plus_queue_claim.c, counts, listings and the operations on one
 * message in ngx_mail_plus_queue_admin.c.
 */


char  *ngx_mail_plus_queue_dirs[] = {
    "incoming", "active", "deferred", "hold", "corrupt"
};


static ngx_int_t ngx_mail_plus_queue_clean_tmp(ngx_cycle_t *cycle,
    ngx_mail_plus_queue_t *q, ngx_uint_t *removed);
static void ngx_mail_plus_queue_op_log(ngx_mail_plus_queue_op_t *op,
    ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_mail_plus_queue_op_thread(void *data, ngx_log_t *log);
#endif
static void ngx_mail_plus_queue_op_done(ngx_event_t *ev);


ngx_mail_plus_queue_t *
ngx_mail_plus_queue_create(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *thread_pool)
{
    ngx_mail_plus_queue_t  *q;

    static ngx_str_t  name = ngx_string("mail_plus_queue");

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

    /* the flushes, for every worker */

    q->shm_zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                        &ngx_mail_plus_queue_module);
    if (q->shm_zone == NULL) {
        return NULL;
    }

    q->shm_zone->init = ngx_mail_plus_queue_shm_init;

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

    /* the longest names in it: deferred/<bucket>/<ID>, corrupt/<ID>.<time> */

    if (q->path.len + sizeof("/deferred//") + NGX_MAIL_PLUS_QUEUE_BUCKET_LEN
        + NGX_MAIL_PLUS_QUEUE_ID_LEN > NGX_MAX_PATH
        || q->path.len + sizeof("/corrupt/.") + NGX_MAIL_PLUS_QUEUE_ID_LEN
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


ngx_int_t
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

ngx_uint_t
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


ngx_int_t
ngx_mail_plus_queue_open_dir(u_char *path, ngx_dir_t *dir)
{
    ngx_str_t  name;

    name.data = path;
    name.len = ngx_strlen(path);

    return ngx_open_dir(&name, dir);
}


/* an ID: 22 upper case hex digits */

ngx_int_t
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


ngx_int_t
ngx_mail_plus_queue_active_name(ngx_mail_plus_queue_t *q, u_char *id,
    u_char *path)
{
    (void) ngx_sprintf(path, "%V/active/%*s.%P%Z", &q->path,
                       (size_t) NGX_MAIL_PLUS_QUEUE_ID_LEN, id, ngx_pid);

    return NGX_OK;
}


ngx_mail_plus_queue_op_t *
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


ngx_int_t
ngx_mail_plus_queue_op_post(ngx_mail_plus_queue_op_t *op, ngx_log_t *log)
{
#if (NGX_THREADS)
    ngx_thread_task_t  *task;

    task = op->task;

    task->handler = ngx_mail_plus_queue_op_thread;
    task->event.data = op;
    task->event.handler = ngx_mail_plus_queue_op_done;

    if (ngx_thread_task_post(op->queue->thread_pool, task) == NGX_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                       "queue: %s %s posted to the thread pool",
                       op->name, op->id);
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

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                   "queue: %s %s done in place", op->name, op->id);

    op->event.data = op;
    op->event.handler = ngx_mail_plus_queue_op_done;
    op->event.log = log;

    ngx_post_event(&op->event, &ngx_posted_events);

    return NGX_AGAIN;

#endif
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

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, op->err,
                   "queue: %s %s completed%s%s", op->name, op->id,
                   op->failed ? ", failed: " : "",
                   op->failed ? op->failed : "");

    ngx_mail_plus_queue_op_log(op, ngx_cycle->log);

    if (op->finish) {
        op->finish(op);
    }

    op->handler(op->data);
}
