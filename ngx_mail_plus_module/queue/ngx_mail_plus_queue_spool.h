
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_QUEUE_SPOOL_H_INCLUDED_
#define _NGX_MAIL_PLUS_QUEUE_SPOOL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue.h"

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif


/*
 * What the files of queue/ share, and no other folder includes: the
 * queue itself, its paths, and the operations run in its thread pool.
 */


/*
 * Creating a file (a new inode) is the costliest step of a message for
 * the event loop, so each worker keeps a stock of empty temporary files,
 * made ahead in the thread pool; a message takes one, and the stock is
 * topped up when it runs low.  Without a file in stock, one is made in
 * place.
 */

#define NGX_MAIL_PLUS_QUEUE_STOCK  32


/* deferrals of a worker into one slot of the buckets of deferred/ */

#define NGX_MAIL_PLUS_QUEUE_SLOT_SIZE  1024


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

    ngx_uint_t                  deferrals;    /* by this worker: slots */
    ngx_shm_zone_t             *shm_zone;     /* flushes */
};


/* what the workers share: the flushes, the last ones' keys in a ring */

typedef struct {
    ngx_atomic_t                flushes;
    uint32_t                    keys[NGX_MAIL_PLUS_QUEUE_FLUSHES];
} ngx_mail_plus_queue_sh_t;


/*
 * An operation on the spool that may block runs in the thread pool when
 * there is one (in place otherwise): "run" does the I/O with no pool and
 * no log, then "finish" and the handler are called from the event loop.
 */

typedef struct ngx_mail_plus_queue_op_s  ngx_mail_plus_queue_op_t;

typedef void (*ngx_mail_plus_queue_op_pt)(ngx_mail_plus_queue_op_t *op);

struct ngx_mail_plus_queue_op_s {
    ngx_mail_plus_queue_t          *queue;
    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    char                           *name;     /* for the debug log */
    ngx_mail_plus_queue_op_pt       run;
    ngx_mail_plus_queue_op_pt       finish;   /* in the event loop, or NULL */
    ngx_str_t                       state;    /* a deferral */
    ngx_uint_t                     *sizes;    /* a count of the spool */
    time_t                          next;
    u_char                          bucket[NGX_MAIL_PLUS_QUEUE_BUCKET_LEN + 1];
    uint32_t                        key;      /* a flush: 0, all */
    ngx_uint_t                     *flushed;
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


/* ngx_mail_plus_queue.c */

ngx_int_t ngx_mail_plus_queue_mkdir(ngx_cycle_t *cycle, u_char *path);
ngx_uint_t ngx_mail_plus_queue_count(u_char *dir);
ngx_int_t ngx_mail_plus_queue_open_dir(u_char *path, ngx_dir_t *dir);
ngx_int_t ngx_mail_plus_queue_valid_id(u_char *name, size_t len);
ngx_int_t ngx_mail_plus_queue_active_name(ngx_mail_plus_queue_t *q,
    u_char *id, u_char *path);
ngx_mail_plus_queue_op_t *ngx_mail_plus_queue_op_alloc(
    ngx_mail_plus_queue_t *q, u_char *id, ngx_mail_plus_queue_op_pt run,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool);
ngx_int_t ngx_mail_plus_queue_op_post(ngx_mail_plus_queue_op_t *op,
    ngx_log_t *log);

/* ngx_mail_plus_queue_deferred.c */

u_char *ngx_mail_plus_queue_bucket(u_char *p, time_t next, time_t now,
    uint32_t key, ngx_uint_t slot);
ngx_int_t ngx_mail_plus_queue_bucket_parse(u_char *name, size_t len,
    time_t *due, uint32_t *key);
void ngx_mail_plus_queue_deferred_due(ngx_mail_plus_queue_op_t *op);
ngx_uint_t ngx_mail_plus_queue_deferred_count(ngx_mail_plus_queue_t *q);
ngx_int_t ngx_mail_plus_queue_deferred_find(ngx_mail_plus_queue_t *q,
    u_char *id, u_char *path);
ngx_int_t ngx_mail_plus_queue_shm_init(ngx_shm_zone_t *shm_zone, void *data);

/* ngx_mail_plus_spool_record.c: the writer, and one line of the reader */

size_t ngx_mail_plus_spool_envelope_size(ngx_mail_plus_queue_envelope_t *env);
u_char *ngx_mail_plus_spool_envelope_write(u_char *p, u_char *id,
    time_t arrival, ngx_mail_plus_queue_envelope_t *env, off_t *body);
char *ngx_mail_plus_spool_body_value(ngx_uint_t body);
ngx_int_t ngx_mail_plus_spool_line(ngx_mail_plus_queue_record_t *r,
    u_char *p, u_char *eol, char **reason);

/* ngx_mail_plus_queue_add.c */

void ngx_mail_plus_queue_done_handler(ngx_event_t *ev);


#endif /* _NGX_MAIL_PLUS_QUEUE_SPOOL_H_INCLUDED_ */
