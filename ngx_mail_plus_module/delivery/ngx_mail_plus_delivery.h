
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_DELIVERY_H_INCLUDED_
#define _NGX_MAIL_PLUS_DELIVERY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_queue.h"
#include "ngx_mail_plus_smtp.h"     /* the servers' confs, the longest path */


/*
 * The delivery engine: its directives (ngx_mail_plus_delivery_module.c),
 * the queue runner (ngx_mail_plus_delivery.c), the destinations and their
 * scheduling (ngx_mail_plus_destination.c), the SMTP/LMTP client
 * (ngx_mail_plus_smtp_client.c) and the delivery status notifications
 * (ngx_mail_plus_bounce.c).  The runner calls the scheduler, the scheduler
 * calls the client; each answers only through the handlers it was given:
 * the client through conn->done and job->result, the scheduler through
 * the runner's ngx_mail_plus_job_done_pt.
 */


/* the state of a recipient */

#define NGX_MAIL_PLUS_RCPT_PENDING    0
#define NGX_MAIL_PLUS_RCPT_SENT       1
#define NGX_MAIL_PLUS_RCPT_DEFERRED   2
#define NGX_MAIL_PLUS_RCPT_FAILED     3
#define NGX_MAIL_PLUS_RCPT_DONE       4   /* in an earlier attempt */


/* STARTTLS to a next hop */

#define NGX_MAIL_PLUS_TLS_OFF         0
#define NGX_MAIL_PLUS_TLS_MAY         1   /* when offered */
#define NGX_MAIL_PLUS_TLS_REQUIRED    2
#define NGX_MAIL_PLUS_TLS_VERIFY      3   /* required, certificate checked */


/* the reports to the sender (RFC 3464) */

#define NGX_MAIL_PLUS_DSN_FAILED      0
#define NGX_MAIL_PLUS_DSN_DELAYED     1
#define NGX_MAIL_PLUS_DSN_SUCCESS     2


/* what is kept of why a destination failed */

#define NGX_MAIL_PLUS_DEST_ERROR_LEN  128


/* recipients in one transaction, at most */

#define NGX_MAIL_PLUS_JOB_RCPTS       50


typedef struct {
    ngx_str_t                       domain;   /* lower case; ".x": subdomains */
    ngx_str_t                       name;     /* host:port, for the log */
    ngx_addr_t                      addr;
    ngx_uint_t                      protocol; /* NGX_MAIL_PLUS_SMTP, _LMTP */
    ngx_str_t                       auth;     /* AUTH PLAIN argument */
    ngx_uint_t                      tls;      /* NGX_MAIL_PLUS_TLS_* */
    ngx_str_t                       tls_name; /* null-terminated */
} ngx_mail_plus_relay_t;


typedef struct {
    ngx_flag_t                      enable;
    time_t                          retry_first;
    time_t                          retry_max;
    time_t                          lifetime;
    ngx_msec_t                      scan_interval;
    ngx_uint_t                      concurrency;
    ngx_uint_t                      active_limit;
    ngx_msec_t                      connect_timeout;
    ngx_msec_t                      helo_timeout;
    ngx_msec_t                      command_timeout;
    ngx_msec_t                      data_timeout;
    ngx_msec_t                      idle_timeout;
    ngx_str_t                       helo_name;
    ngx_array_t                    *routes;   /* ngx_mail_plus_relay_t */
    ngx_mail_plus_relay_t          *relay;    /* the smarthost */
    time_t                          delay_warning;  /* 0: off */
    size_t                          bounce_size_limit;
    ngx_str_t                       double_bounce_to;  /* empty: off */
    ngx_uint_t                      tls;      /* to mailbox backends */
    ngx_flag_t                      tls_verify;
    ngx_uint_t                      tls_verify_depth;
    ngx_str_t                       tls_trusted_certificate;
#if (NGX_MAIL_SSL)
    ngx_ssl_t                      *ssl;
#endif
} ngx_mail_plus_delivery_conf_t;


typedef struct ngx_mail_plus_dmsg_s  ngx_mail_plus_dmsg_t;
typedef struct ngx_mail_plus_dest_s  ngx_mail_plus_dest_t;
typedef struct ngx_mail_plus_job_s   ngx_mail_plus_job_t;


typedef struct {
    ngx_str_t                       addr;     /* as in the envelope */
    ngx_str_t                       login;    /* as the next hop knows it */
    ngx_uint_t                      state;    /* NGX_MAIL_PLUS_RCPT_* */
    ngx_uint_t                      code;     /* of the reply */
    ngx_str_t                       reply;    /* for the log and bounces */
    ngx_str_t                       dsn;      /* e.g. "5.1.1" */
    ngx_mail_plus_dest_t           *dest;
    ngx_mail_plus_check_t          *check;    /* the router's, with
                                                 directories */
    ngx_str_t                       notify;   /* RFC 3461, as received */
    ngx_str_t                       orcpt;
    ngx_uint_t                      notify_mask;
    ngx_mail_plus_queue_error_t     last;     /* the last error, kept in
                                                 the state file */
    unsigned                        remote:1; /* the reply is the peer's */
    unsigned                        passed:1; /* NOTIFY= to a DSN hop */
} ngx_mail_plus_rcpt_t;


typedef void (*ngx_mail_plus_delivery_plan_pt)(ngx_mail_plus_dmsg_t *msg);


/* a message claimed by this worker */

struct ngx_mail_plus_dmsg_s {
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;
    ngx_mail_plus_queue_t          *spool;

    u_char                          id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_fd_t                        fd;
    off_t                           body;     /* where the content starts */
    off_t                           size;     /* of the content */
    time_t                          arrival;
    ngx_str_t                       sender;
    ngx_str_t                       ret;      /* RFC 3461, as received */
    ngx_str_t                       envid;
    ngx_uint_t                      body_type;
    ngx_uint_t                      attempts; /* before this one */
    ngx_array_t                     rcpts;    /* ngx_mail_plus_rcpt_t */
    ngx_uint_t                      jobs;     /* in progress */
    ngx_uint_t                      lookups;  /* of recipients, out */
    ngx_mail_plus_delivery_plan_pt  plan;     /* after the lookups */

    ngx_queue_t                     queue;    /* of the worker */

    ngx_mail_plus_queue_load_t      load;     /* the claim and its reads */
    u_char                          bucket[NGX_MAIL_PLUS_QUEUE_BUCKET_LEN + 1];
    ngx_event_t                     retry;    /* the thread pool was busy */
    char                           *reason;   /* corrupt: why */

    unsigned                        smtputf8:1;
    unsigned                        warned:1; /* a delay warning was sent */
    unsigned                        bounced:1;
    unsigned                        claiming:1; /* the claim in flight */
};


/* a destination: a next hop and its connections */

struct ngx_mail_plus_dest_s {
    ngx_str_t                       name;     /* host:port */
    struct sockaddr                *sockaddr;
    socklen_t                       socklen;
    ngx_uint_t                      protocol;
    ngx_str_t                       auth;
    ngx_uint_t                      tls;      /* in effect: _TLS_* */
    ngx_str_t                       tls_name; /* null-terminated */
    ngx_mail_plus_relay_t          *relay;    /* NULL: a mailbox backend */
    ngx_mail_plus_server_t         *server;   /* for health, or NULL */

    ngx_uint_t                      active;   /* connections */
    ngx_queue_t                     idle;     /* ngx_mail_plus_conn_t */
    ngx_queue_t                     jobs;     /* waiting */
    ngx_queue_t                     queue;    /* of the worker */

    uint32_t                        key;      /* of its deferred buckets */
    time_t                          retry;    /* failed: its next attempt */
    time_t                          backoff;  /* the last wait */
    ngx_str_t                       error;    /* why it failed */
    u_char                          text[NGX_MAIL_PLUS_DEST_ERROR_LEN];
    unsigned                        probing:1;  /* its next attempt runs */
};


/*
 * the result of the i-th recipient of a job, or with NGX_MAIL_PLUS_JOB_ALL
 * of each one that has none yet; remote: the text is the peer's reply
 */

#define NGX_MAIL_PLUS_JOB_ALL         ((ngx_uint_t) -1)

typedef void (*ngx_mail_plus_job_result_pt)(ngx_mail_plus_job_t *job,
    ngx_uint_t i, ngx_uint_t code, ngx_str_t *text, ngx_uint_t remote);


/* some recipients of a message for one destination */

struct ngx_mail_plus_job_s {
    ngx_mail_plus_dmsg_t           *msg;
    ngx_mail_plus_dest_t           *dest;
    ngx_mail_plus_job_result_pt     result;   /* the runner's */
    ngx_uint_t                      rcpts[NGX_MAIL_PLUS_JOB_RCPTS];
    ngx_uint_t                      nrcpts;
    ngx_queue_t                     queue;    /* waiting in dest->jobs */
};


typedef struct ngx_mail_plus_client_s  ngx_mail_plus_client_t;
typedef struct ngx_mail_plus_conn_s    ngx_mail_plus_conn_t;


/*
 * how a client's transaction ended, as it tells the scheduler: KEEP, the
 * connection can take another job; QUIT, it is of no more use; FAILED, it
 * was never greeted: the destination failed; RETRY, a reused connection
 * was lost before any reply: the job has no result and wants a new one.
 * A connection with a job pipelined after its current one (conn->next)
 * keeps it on KEEP: conn->next becomes conn->job, the connection stays
 * the client's; on any other end that job has no result and waits again.
 */

#define NGX_MAIL_PLUS_CONN_KEEP       0
#define NGX_MAIL_PLUS_CONN_QUIT       1
#define NGX_MAIL_PLUS_CONN_FAILED     2
#define NGX_MAIL_PLUS_CONN_RETRY      3

typedef void (*ngx_mail_plus_conn_done_pt)(ngx_mail_plus_conn_t *conn,
    ngx_uint_t how);


/*
 * the job is over; its recipients with no result yet take code and text
 * (code 0: none is left)
 */

typedef void (*ngx_mail_plus_job_done_pt)(ngx_mail_plus_job_t *job,
    ngx_uint_t code, ngx_str_t *text);


/*
 * a connection to a destination as the scheduler sees it; the client's
 * own state is private to ngx_mail_plus_smtp_client.c
 */

struct ngx_mail_plus_conn_s {
    ngx_mail_plus_client_t         *client;
    ngx_connection_t               *connection;
    ngx_mail_plus_dest_t           *dest;
    ngx_mail_plus_job_t            *job;      /* NULL: between jobs */
    ngx_mail_plus_job_t            *next;     /* pipelined after job */
    ngx_mail_plus_conn_done_pt      done;     /* set by the scheduler */
    ngx_queue_t                     queue;    /* in dest->idle */
    unsigned                        idle:1;   /* parked in dest->idle */
};


/* the queue runner */

ngx_int_t ngx_mail_plus_delivery_init_worker(ngx_cycle_t *cycle,
    ngx_mail_plus_delivery_conf_t *dcf, ngx_mail_plus_queue_t *q);
void ngx_mail_plus_delivery_exit_worker(ngx_cycle_t *cycle);
ngx_uint_t ngx_mail_plus_delivery_rcpt_local(ngx_mail_plus_rcpt_t *rcpt);

/* the router's answers about local recipients, with directories */

ngx_int_t ngx_mail_plus_delivery_lookup(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_delivery_plan_pt plan);
void ngx_mail_plus_delivery_lookup_free(ngx_mail_plus_dmsg_t *msg);

/* the destinations and their scheduling */

typedef void (*ngx_mail_plus_dest_alive_pt)(ngx_mail_plus_dest_t *dest);

void ngx_mail_plus_dest_init(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_job_done_pt done, ngx_mail_plus_dest_alive_pt alive);
ngx_uint_t ngx_mail_plus_dest_count(void);
ngx_uint_t ngx_mail_plus_dest_waits(ngx_mail_plus_queue_wait_t *wait);
time_t ngx_mail_plus_dest_next_attempt(time_t since);
void ngx_mail_plus_dest_flush(uint32_t key);
ngx_mail_plus_dest_t *ngx_mail_plus_dest_get(struct sockaddr *sa,
    socklen_t socklen, in_port_t port, ngx_uint_t protocol,
    ngx_mail_plus_relay_t *relay, ngx_mail_plus_server_t *server);
void ngx_mail_plus_dest_submit(ngx_mail_plus_job_t *job);
ngx_mail_plus_job_t *ngx_mail_plus_dest_pipeline(ngx_mail_plus_conn_t *conn);

/* the client */

ngx_mail_plus_conn_t *ngx_mail_plus_client_start(
    ngx_mail_plus_delivery_conf_t *dcf, ngx_mail_plus_dest_t *dest,
    ngx_mail_plus_job_t *job, ngx_mail_plus_conn_done_pt done);
void ngx_mail_plus_client_next(ngx_mail_plus_client_t *cl,
    ngx_mail_plus_job_t *job);
void ngx_mail_plus_client_close(ngx_mail_plus_client_t *cl, ngx_uint_t quit);

/* bounces */

ngx_int_t ngx_mail_plus_bounce(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_dmsg_t *msg, ngx_uint_t type,
    ngx_mail_plus_queue_handler_pt handler, void *data);
ngx_int_t ngx_mail_plus_bounce_double(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_dmsg_t *msg);


extern ngx_module_t  ngx_mail_plus_delivery_module;


#endif /* _NGX_MAIL_PLUS_DELIVERY_H_INCLUDED_ */
