
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_QUEUE_H_INCLUDED_
#define _NGX_MAIL_PLUS_QUEUE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>


/*
 * The spool (docs/spool.md): the only code that opens, reads, writes,
 * renames or unlinks its files, and the one writer and reader of their
 * format.  It knows no protocol: the SMTP server and HTTP submission add
 * messages, the delivery claims them, the HTTP modules list and count
 * them, all through this header.
 *
 *   ngx_mail_plus_queue_module.c  the directives, the queue of a cycle
 *   ngx_mail_plus_queue.c         creation, start, paths, the thread pool
 *   ngx_mail_plus_queue_add.c     adding messages: open, write, commit
 *   ngx_mail_plus_queue_claim.c   the delivery's side: scans, claims,
 *                                 reads, deferrals, removals
 *   ngx_mail_plus_queue_deferred.c  deferred/ by due time and destination:
 *                                 its buckets, the due ones, flushes
 *   ngx_mail_plus_queue_admin.c   counts, listings, one message's moves
 *   ngx_mail_plus_spool_record.c  the envelope and state file records
 */


typedef struct ngx_mail_plus_queue_s      ngx_mail_plus_queue_t;
typedef struct ngx_mail_plus_queue_msg_s  ngx_mail_plus_queue_msg_t;

typedef void (*ngx_mail_plus_queue_handler_pt)(ngx_mail_plus_queue_msg_t *m);
typedef void (*ngx_mail_plus_queue_notify_pt)(ngx_mail_plus_queue_t *q,
    u_char *id);


#define NGX_MAIL_PLUS_QUEUE_ID_LEN      22

/* a listing shows this much of a sender, the longest SMTP path */

#define NGX_MAIL_PLUS_QUEUE_SENDER_LEN  256


/* the body type of a message (BODY= of MAIL, or found in the content) */

#define NGX_MAIL_PLUS_BODY_NONE        0
#define NGX_MAIL_PLUS_BODY_7BIT        1
#define NGX_MAIL_PLUS_BODY_8BITMIME    2


/* NOTIFY= of RFC 3461 a recipient carries; none given: FAILURE and DELAY */

#define NGX_MAIL_PLUS_NOTIFY_NEVER    0x01
#define NGX_MAIL_PLUS_NOTIFY_SUCCESS  0x02
#define NGX_MAIL_PLUS_NOTIFY_FAILURE  0x04
#define NGX_MAIL_PLUS_NOTIFY_DELAY    0x08


/* a message on its way into the queue */

struct ngx_mail_plus_queue_msg_s {
    ngx_pool_t                     *pool;      /* the message's own */
    ngx_mail_plus_queue_t          *queue;
    ngx_log_t                      *log;

    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    u_char                         *temp;      /* NUL-terminated paths */
    u_char                         *name;
    ngx_fd_t                        fd;
    off_t                           offset;    /* written so far */
    off_t                           body;      /* of the "body" value */
    ngx_err_t                       err;

    ngx_mail_plus_queue_handler_pt  handler;   /* after commit */
    void                           *data;

    ngx_mail_plus_queue_msg_t      *next;      /* in a batch */

    unsigned                        pending:1;
    unsigned                        cancelled:1;
};


typedef struct {
    ngx_str_t                       sender;
    ngx_array_t                    *recipients;  /* ngx_str_t */
    ngx_str_t                       client;
    ngx_str_t                       helo;
    ngx_str_t                       login;
    ngx_uint_t                      body;
    ngx_str_t                       ret;         /* RFC 3461, or empty */
    ngx_str_t                       envid;
    ngx_array_t                    *dsn;         /* ngx_str_t a recipient */
    unsigned                        smtputf8:1;
} ngx_mail_plus_queue_envelope_t;


ngx_mail_plus_queue_t *ngx_mail_plus_queue_create(ngx_conf_t *cf,
    ngx_str_t *path, ngx_str_t *thread_pool);
ngx_int_t ngx_mail_plus_queue_init(ngx_cycle_t *cycle,
    ngx_mail_plus_queue_t *q);
ngx_mail_plus_queue_msg_t *ngx_mail_plus_queue_open(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_envelope_t *env, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_write(ngx_mail_plus_queue_msg_t *m,
    u_char *data, size_t len);
ngx_int_t ngx_mail_plus_queue_set_body(ngx_mail_plus_queue_msg_t *m,
    ngx_uint_t body);
ngx_int_t ngx_mail_plus_queue_commit(ngx_mail_plus_queue_msg_t *m);
void ngx_mail_plus_queue_abort(ngx_mail_plus_queue_msg_t *m);
void ngx_mail_plus_queue_exit(ngx_mail_plus_queue_t *q);

/* for the delivery (docs/spool.md): deferred/, state/, claims by pid */

#define NGX_MAIL_PLUS_QUEUE_INCOMING  0
#define NGX_MAIL_PLUS_QUEUE_DEFERRED  1

ngx_int_t ngx_mail_plus_queue_delivery_init(ngx_cycle_t *cycle,
    ngx_mail_plus_queue_t *q);
void ngx_mail_plus_queue_set_notify(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_notify_pt notify);
ngx_uint_t ngx_mail_plus_queue_reclaim(ngx_mail_plus_queue_t *q,
    ngx_log_t *log);
typedef void (*ngx_mail_plus_queue_defer_pt)(void *data);


/*
 * deferred/<bucket>/<ID>: a bucket is named by when its messages are due
 * and by the destination they wait for, a key (docs/spool.md); key 0 is
 * none (recipients of several destinations, or of none)
 */

#define NGX_MAIL_PLUS_QUEUE_BUCKET_LEN  26

uint32_t ngx_mail_plus_queue_key(ngx_str_t *name);


/*
 * a destination a scan must not take from, or only "allow" messages
 * from: one that failed and waits for its next attempt
 */

typedef struct {
    uint32_t                        key;
    ngx_uint_t                      allow;
} ngx_mail_plus_queue_wait_t;


/* a scan for due messages, in the thread pool */

typedef struct {
    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_uint_t                      which;  /* NGX_MAIL_PLUS_QUEUE_INCOMING */
    u_char                          bucket[NGX_MAIL_PLUS_QUEUE_BUCKET_LEN + 1];
} ngx_mail_plus_queue_due_id_t;

typedef struct {
    ngx_mail_plus_queue_due_id_t   *ids;        /* room for nalloc */
    ngx_uint_t                      nalloc;
    ngx_uint_t                      nids;
    ngx_uint_t                      reclaimed;  /* claims of gone workers */
    time_t                          now;
    ngx_mail_plus_queue_wait_t     *wait;       /* destinations waiting */
    ngx_uint_t                      nwait;
    time_t                          next;       /* the next bucket due */
    ngx_uint_t                      waiting;    /* due, for a "wait" one */
    unsigned                        reclaim:1;  /* claims of gone workers */
    unsigned                        more:1;     /* more was due than room */
} ngx_mail_plus_queue_due_t;

ngx_int_t ngx_mail_plus_queue_scan(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_due_t *due, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);


/*
 * a claim and the reads of the envelope and the state file, in the
 * thread pool; fd is NGX_INVALID_FILE when the message was not claimed
 * (another worker was first, or a failure, logged); head.data is NULL
 * when the claimed file could not be read (logged); the buffers live as
 * long as the pool given
 */

typedef struct {
    ngx_uint_t                      which;
    u_char                         *bucket;     /* deferred/: its bucket */
    ngx_fd_t                        fd;
    off_t                           size;       /* of the file */
    ngx_str_t                       head;       /* the envelope, at least */
    ngx_str_t                       state;      /* empty when none */
} ngx_mail_plus_queue_load_t;

ngx_int_t ngx_mail_plus_queue_load(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_load_t *load, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);

/* a bounce: part of a claimed file copied into a new message */

ngx_int_t ngx_mail_plus_queue_copy(ngx_mail_plus_queue_msg_t *m, ngx_fd_t fd,
    off_t offset, off_t size, ngx_uint_t headers,
    ngx_mail_plus_queue_defer_pt handler, void *data);

/*
 * reads of a claimed file for a delivery connection, in the thread pool;
 * a reader freed while a read is in flight is freed when it is done, and
 * its handler is not called
 */

typedef struct ngx_mail_plus_queue_reader_s  ngx_mail_plus_queue_reader_t;

typedef void (*ngx_mail_plus_queue_read_pt)(void *data, u_char *buf,
    ssize_t n, ngx_err_t err);

ngx_mail_plus_queue_reader_t *ngx_mail_plus_queue_reader(
    ngx_mail_plus_queue_t *q, size_t size, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_read(ngx_mail_plus_queue_reader_t *rd,
    ngx_fd_t fd, off_t offset, size_t len, ngx_mail_plus_queue_read_pt handler,
    void *data);
void ngx_mail_plus_queue_reader_free(ngx_mail_plus_queue_reader_t *rd);


ngx_int_t ngx_mail_plus_queue_defer(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_str_t *state, time_t next, uint32_t key,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool,
    ngx_log_t *log);

/*
 * a flush: the deferred messages, all of them (key 0) or those waiting
 * for one destination, are made due now, in the thread pool; "flushed"
 * counts them; every worker hears of it through
 * ngx_mail_plus_queue_flushed(), which gives the keys flushed since
 * "seen" (key 0: all)
 */

#define NGX_MAIL_PLUS_QUEUE_FLUSHES  16

ngx_int_t ngx_mail_plus_queue_flush(ngx_mail_plus_queue_t *q, uint32_t key,
    ngx_uint_t *flushed, ngx_mail_plus_queue_defer_pt handler, void *data,
    ngx_pool_t *pool, ngx_log_t *log);
ngx_uint_t ngx_mail_plus_queue_flushed(ngx_mail_plus_queue_t *q,
    ngx_atomic_uint_t *seen, uint32_t *keys);
ngx_int_t ngx_mail_plus_queue_corrupt(ngx_mail_plus_queue_t *q, u_char *id,
    char *reason, ngx_mail_plus_queue_defer_pt handler, void *data,
    ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_release(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_remove(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool,
    ngx_log_t *log);

/*
 * a queue file's records as read (ngx_mail_plus_spool_record.c, the one
 * reader of the format): the envelope, then the state file
 */

/*
 * the last error of a recipient still to be tried (an "error" line of the
 * state file): when, its enhanced status code, the next hop ("-" for
 * none) and the reply or our reason; relay and text are kept escaped as
 * in the file (ngx_mail_plus_spool_unescape() gives the bytes), or raw
 * for the writer when "escaped" is not set; at most
 * NGX_MAIL_PLUS_QUEUE_ERROR_LEN bytes of each are kept
 */

#define NGX_MAIL_PLUS_QUEUE_ERROR_LEN   512

typedef struct {
    time_t                          time;        /* 0: none */
    ngx_str_t                       dsn;         /* e.g. "4.4.1" */
    ngx_str_t                       relay;
    ngx_str_t                       text;
    unsigned                        escaped:1;
} ngx_mail_plus_queue_error_t;


typedef struct {
    ngx_str_t                       addr;
    ngx_str_t                       dsn;         /* the "dsn" value */
    ngx_str_t                       notify;      /* RFC 3461, as received */
    ngx_str_t                       orcpt;
    ngx_uint_t                      notify_mask; /* NGX_MAIL_PLUS_NOTIFY_* */
    ngx_mail_plus_queue_error_t     error;       /* of the last attempt */
    unsigned                        done:1;      /* in an earlier attempt */
} ngx_mail_plus_queue_rcpt_t;


typedef struct {
    off_t                           body;        /* the content's start */
    off_t                           size;        /* of the content */
    time_t                          arrival;
    ngx_str_t                       client;
    ngx_str_t                       helo;
    ngx_str_t                       login;
    ngx_str_t                       sender;
    ngx_str_t                       ret;         /* RFC 3461, as received */
    ngx_str_t                       envid;
    ngx_uint_t                      body_type;   /* NGX_MAIL_PLUS_BODY_* */
    ngx_uint_t                      nrcpts;      /* "rcpt" lines */
    ngx_array_t                    *rcpts;       /* ngx_mail_plus_queue_rcpt_t,
                                                    NULL: counted only */
    ngx_uint_t                      attempts;    /* the state file's */
    unsigned                        smtputf8:1;
    unsigned                        smtputf8_line:1;
    unsigned                        warned:1;
    unsigned                        as_is:1;     /* shown: nothing left out */
} ngx_mail_plus_queue_record_t;

ngx_int_t ngx_mail_plus_spool_envelope(ngx_mail_plus_queue_record_t *r,
    u_char *id, u_char *buf, size_t len, off_t size, char **reason);
ngx_int_t ngx_mail_plus_spool_show(ngx_mail_plus_queue_record_t *r,
    u_char *buf, size_t len);
void ngx_mail_plus_spool_state(ngx_mail_plus_queue_record_t *r,
    u_char *data, size_t len);
ngx_uint_t ngx_mail_plus_spool_notify(ngx_str_t *value);

/*
 * a state file for ngx_mail_plus_queue_defer(): its size (that of its
 * first lines with addr NULL, plus that of a "done" line for each address
 * done), then its lines
 */

size_t ngx_mail_plus_spool_state_size(ngx_str_t *addr);
u_char *ngx_mail_plus_spool_state_write(u_char *p, ngx_uint_t attempts,
    ngx_uint_t warned);
u_char *ngx_mail_plus_spool_state_done(u_char *p, ngx_str_t *addr);

/*
 * an "error" line for a recipient still to be tried: its size at most,
 * then the line; and the bytes of an escaped relay or text of a record
 * read (at most NGX_MAIL_PLUS_QUEUE_ERROR_LEN of them): the end of them
 */

size_t ngx_mail_plus_spool_error_size(ngx_str_t *addr,
    ngx_mail_plus_queue_error_t *err);
u_char *ngx_mail_plus_spool_error_write(u_char *p, ngx_str_t *addr,
    ngx_mail_plus_queue_error_t *err);
u_char *ngx_mail_plus_spool_unescape(u_char *dst, ngx_str_t *src);


/*
 * the directories a message can be in, for the status endpoint and the
 * queue API: ngx_mail_plus_queue_dirs[] names them, in this order
 */

#define NGX_MAIL_PLUS_QUEUE_IN_INCOMING  0
#define NGX_MAIL_PLUS_QUEUE_IN_ACTIVE    1
#define NGX_MAIL_PLUS_QUEUE_IN_DEFERRED  2
#define NGX_MAIL_PLUS_QUEUE_IN_HOLD      3
#define NGX_MAIL_PLUS_QUEUE_IN_CORRUPT   4

#define NGX_MAIL_PLUS_QUEUE_NSIZES  5

extern char  *ngx_mail_plus_queue_dirs[];

ngx_int_t ngx_mail_plus_queue_sizes(ngx_mail_plus_queue_t *q,
    ngx_uint_t *sizes, ngx_mail_plus_queue_defer_pt handler, void *data,
    ngx_pool_t *pool, ngx_log_t *log);


/* for the queue API: a message as a listing shows it */

typedef struct {
    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_uint_t                      where;       /* NGX_MAIL_PLUS_QUEUE_IN_* */
    u_char                          sender[NGX_MAIL_PLUS_QUEUE_SENDER_LEN];
    size_t                          sender_len;
    ngx_uint_t                      recipients;
    off_t                           size;
    time_t                          arrival;
    time_t                          mtime;       /* deferred: next attempt */
    unsigned                        envelope:1;  /* read whole */
} ngx_mail_plus_queue_entry_t;


typedef struct {
    ngx_mail_plus_queue_entry_t    *entries;     /* room for nalloc */
    ngx_uint_t                      nalloc;
    ngx_uint_t                      nentries;
    ngx_uint_t                      total;       /* beyond nalloc too */
} ngx_mail_plus_queue_list_t;


/* the operations on one message, and what they found */

#define NGX_MAIL_PLUS_QUEUE_SHOW     0
#define NGX_MAIL_PLUS_QUEUE_HOLD     1
#define NGX_MAIL_PLUS_QUEUE_UNHOLD   2
#define NGX_MAIL_PLUS_QUEUE_DELETE   3

typedef struct {
    ngx_uint_t                      what;        /* NGX_MAIL_PLUS_QUEUE_* */
    ngx_int_t                       result;
    ngx_uint_t                      where;       /* where it was */
    off_t                           size;
    time_t                          mtime;
    ngx_str_t                       head;        /* show: the envelope */
    size_t                          head_size;   /*   room in head.data */
    ngx_str_t                       state;       /*   the state file */
    size_t                          state_size;
    ngx_mail_plus_queue_record_t    record;      /*   both read */
} ngx_mail_plus_queue_admin_t;

ngx_int_t ngx_mail_plus_queue_list(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_list_t *list, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_admin(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_admin_t *a, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_is_id(u_char *name, size_t len);


/* the queue of a cycle (ngx_mail_plus_queue_module.c): NULL, none */

ngx_mail_plus_queue_t *ngx_mail_plus_queue_get(ngx_cycle_t *cycle);
ngx_mail_plus_queue_t *ngx_mail_plus_queue_use(ngx_conf_t *cf);


extern ngx_module_t  ngx_mail_plus_queue_module;


#endif /* _NGX_MAIL_PLUS_QUEUE_H_INCLUDED_ */
