
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_SMTP_H_INCLUDED_
#define _NGX_MAIL_PLUS_SMTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>


/*
 * SMTP store-and-forward: the parser (ngx_mail_plus_smtp_parse.c, pure
 * functions over byte ranges, linked alone into the fuzz target), the
 * session (ngx_mail_plus_smtp_handler.c), the directives
 * (ngx_mail_plus_smtp_module.c) and the spool (ngx_mail_plus_queue.c).
 */


/*
 * the SMTP parser (ngx_mail_plus_smtp_parse.c): for the session, for the
 * HTTP submission (paths and content), for the router's check of a local
 * part, and for the fuzz targets
 */


/* commands */

#define NGX_MAIL_PLUS_SMTP_UNKNOWN     0
#define NGX_MAIL_PLUS_SMTP_HELO        1
#define NGX_MAIL_PLUS_SMTP_EHLO        2
#define NGX_MAIL_PLUS_SMTP_MAIL        3
#define NGX_MAIL_PLUS_SMTP_RCPT        4
#define NGX_MAIL_PLUS_SMTP_DATA        5
#define NGX_MAIL_PLUS_SMTP_BDAT        6
#define NGX_MAIL_PLUS_SMTP_RSET        7
#define NGX_MAIL_PLUS_SMTP_NOOP        8
#define NGX_MAIL_PLUS_SMTP_QUIT        9
#define NGX_MAIL_PLUS_SMTP_VRFY        10
#define NGX_MAIL_PLUS_SMTP_EXPN        11
#define NGX_MAIL_PLUS_SMTP_HELP        12
#define NGX_MAIL_PLUS_SMTP_STARTTLS    13
#define NGX_MAIL_PLUS_SMTP_AUTH        14
#define NGX_MAIL_PLUS_SMTP_NOTIMPL     15   /* TURN, ETRN, ... */


/* BODY= of MAIL */

#define NGX_MAIL_PLUS_BODY_NONE        0
#define NGX_MAIL_PLUS_BODY_7BIT        1
#define NGX_MAIL_PLUS_BODY_8BITMIME    2


/* longest path (RFC 5321 4.5.3.1.3) */

#define NGX_MAIL_PLUS_SMTP_MAX_PATH    256


/* results of the parser beyond NGX_OK, NGX_AGAIN, NGX_ERROR */

#define NGX_MAIL_PLUS_SMTP_TOO_LONG    NGX_DECLINED
#define NGX_MAIL_PLUS_SMTP_BAD_PARAM   NGX_DECLINED
#define NGX_MAIL_PLUS_SMTP_OUT_FULL    NGX_BUSY
#define NGX_MAIL_PLUS_SMTP_HEADERS     NGX_DONE


/* a MAIL FROM or RCPT TO argument */

typedef struct {
    ngx_str_t                   addr;       /* inside <>, may be empty */
    ngx_str_t                   domain;     /* after the last @ */
    off_t                       size;       /* SIZE=, -1 if none */
    ngx_uint_t                  body;       /* NGX_MAIL_PLUS_BODY_* */
    ngx_str_t                   param;      /* the unsupported one */
    ngx_str_t                   ret;        /* RFC 3461: FULL or HDRS */
    ngx_str_t                   envid;
    ngx_str_t                   notify;
    ngx_str_t                   orcpt;
    unsigned                    smtputf8:1;
    unsigned                    utf8:1;     /* non-ASCII in the address */
} ngx_mail_plus_smtp_path_t;


/* the state of the DATA or BDAT reader */

typedef struct {
    ngx_uint_t                  state;
    off_t                       size;       /* octets stored */
    u_char                      name[12];   /* of a header field */
    size_t                      name_len;

    unsigned                    bdat:1;     /* no dots, no terminator */
    unsigned                    real:1;     /* line began after CRLF */
    unsigned                    headers:1;  /* in the header section */
    unsigned                    collect:1;  /* collecting a field name */
    unsigned                    has_date:1;
    unsigned                    has_message_id:1;
    unsigned                    eight_bit:1;
    unsigned                    bare:1;     /* a bare CR or LF was seen */
} ngx_mail_plus_smtp_data_t;


typedef struct {
    ngx_str_t                   spool;
    ngx_str_t                   thread_pool;
    struct ngx_mail_plus_queue_s  *queue;   /* NULL: no server uses it */
} ngx_mail_plus_smtp_main_conf_t;


/*
 * the configuration of an SMTP server, for the delivery too (which
 * domains are local); the recipient probe's is part of it
 */

typedef struct {
    ngx_msec_t                  timeout;    /* of each step */
    time_t                      valid;      /* an answer "exists" is kept */
    time_t                      invalid;    /* "does not exist" */
} ngx_mail_plus_verify_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_array_t                *local_domains;  /* ngx_str_t, lower case */
    ngx_array_t                *trusted;        /* ngx_cidr_t */
    off_t                       max_message_size;
    ngx_uint_t                  max_recipients;
    size_t                      max_line_length;
    ngx_uint_t                  max_errors;
    ngx_msec_t                  command_timeout;
    ngx_msec_t                  data_timeout;
    ngx_msec_t                  send_timeout;
    size_t                      data_min_rate;  /* bytes a second */
    ngx_flag_t                  auth_plaintext;
    ngx_uint_t                  client_sessions;
    ngx_flag_t                  verify_recipients;
    ngx_mail_plus_verify_conf_t  verify;
} ngx_mail_plus_smtp_srv_conf_t;


/* the parser: no allocations, no nginx runtime calls */

ngx_int_t ngx_mail_plus_smtp_read_line(ngx_buf_t *b, size_t max,
    ngx_str_t *line, ngx_uint_t *skip);
ngx_uint_t ngx_mail_plus_smtp_parse_command(ngx_str_t *line,
    ngx_str_t *arg);
ngx_int_t ngx_mail_plus_smtp_parse_path(ngx_str_t *arg, ngx_uint_t rcpt,
    ngx_mail_plus_smtp_path_t *path);
ngx_int_t ngx_mail_plus_smtp_local_part(ngx_str_t *addr);
ngx_int_t ngx_mail_plus_smtp_parse_bdat(ngx_str_t *arg, off_t *size,
    ngx_uint_t *last);
ngx_int_t ngx_mail_plus_smtp_parse_auth(ngx_str_t *arg, ngx_str_t *mech,
    ngx_str_t *initial);
void ngx_mail_plus_smtp_data_init(ngx_mail_plus_smtp_data_t *d,
    ngx_uint_t bdat);
ngx_int_t ngx_mail_plus_smtp_read_data(ngx_mail_plus_smtp_data_t *d,
    u_char **pos, u_char *last, u_char **out, u_char *end);
u_char *ngx_mail_plus_smtp_data_finish(ngx_mail_plus_smtp_data_t *d,
    u_char *out);


/* the spool */

typedef struct ngx_mail_plus_queue_s      ngx_mail_plus_queue_t;
typedef struct ngx_mail_plus_queue_msg_s  ngx_mail_plus_queue_msg_t;

typedef void (*ngx_mail_plus_queue_handler_pt)(ngx_mail_plus_queue_msg_t *m);
typedef void (*ngx_mail_plus_queue_notify_pt)(ngx_mail_plus_queue_t *q,
    u_char *id);


#define NGX_MAIL_PLUS_QUEUE_ID_LEN  22


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
ngx_mail_plus_queue_t *ngx_mail_plus_queue_get(ngx_cycle_t *cycle);

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


/* a scan for due messages, in the thread pool */

typedef struct {
    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_uint_t                      which;  /* NGX_MAIL_PLUS_QUEUE_INCOMING */
} ngx_mail_plus_queue_due_id_t;

typedef struct {
    ngx_mail_plus_queue_due_id_t   *ids;        /* room for nalloc */
    ngx_uint_t                      nalloc;
    ngx_uint_t                      nids;
    ngx_uint_t                      reclaimed;  /* claims of gone workers */
    time_t                          now;
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
    ngx_str_t *state, time_t next, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_corrupt(ngx_mail_plus_queue_t *q, u_char *id,
    char *reason, ngx_mail_plus_queue_defer_pt handler, void *data,
    ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_release(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_remove(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_defer_pt handler, void *data, ngx_pool_t *pool,
    ngx_log_t *log);

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
    u_char                          sender[NGX_MAIL_PLUS_SMTP_MAX_PATH];
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
} ngx_mail_plus_queue_admin_t;

ngx_int_t ngx_mail_plus_queue_list(ngx_mail_plus_queue_t *q,
    ngx_mail_plus_queue_list_t *list, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_admin(ngx_mail_plus_queue_t *q, u_char *id,
    ngx_mail_plus_queue_admin_t *a, ngx_mail_plus_queue_defer_pt handler,
    void *data, ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_mail_plus_queue_is_id(u_char *name, size_t len);


/*
 * what the SMTP session and the HTTP submission share
 * (ngx_mail_plus_submission.c): the Received field, the fields an
 * authenticated submission gets, the DSN value of a recipient
 */

#define NGX_MAIL_PLUS_RECEIVED_LEN  256   /* beyond the names */
#define NGX_MAIL_PLUS_FIELDS_LEN    128   /* beyond the server name */

typedef struct {
    ngx_str_t                       helo;        /* may be empty */
    ngx_str_t                       addr;        /* of the client */
    ngx_str_t                       server_name;
    char                           *with;        /* "ESMTPSA", "HTTPA" */
    u_char                         *id;
    ngx_str_t                      *rcpt;        /* the only one, or NULL */
    unsigned                        ipv6:1;
} ngx_mail_plus_received_t;

u_char *ngx_mail_plus_received(u_char *p, ngx_mail_plus_received_t *rv);
u_char *ngx_mail_plus_submission_fields(u_char *p,
    ngx_mail_plus_smtp_data_t *d, u_char *id, ngx_str_t *server_name);
ngx_int_t ngx_mail_plus_dsn_value(ngx_pool_t *pool,
    ngx_mail_plus_smtp_path_t *path, ngx_str_t *dsn);


/* the module, whose server configuration the delivery reads */

extern ngx_module_t  ngx_mail_plus_smtp_module;


#endif /* _NGX_MAIL_PLUS_SMTP_H_INCLUDED_ */
