
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_DIR_PGSQL_H_INCLUDED_
#define _NGX_MAIL_PLUS_DIR_PGSQL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include "ngx_mail_plus_directory.h"


/*
 * The PostgreSQL source ("router_directory pgsql"): its configuration
 * (ngx_mail_plus_dir_pgsql_conf.c), its per-worker pool and the lookups
 * that wait for it (ngx_mail_plus_dir_pgsql.c), a connection and its
 * query (ngx_mail_plus_dir_pgsql_conn.c), a query's result made into the
 * answer (ngx_mail_plus_dir_pgsql_result.c).
 */


char *ngx_mail_plus_dir_pgsql_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir);


#if (NGX_MAIL_PLUS_PGSQL)

#include <libpq-fe.h>


#define NGX_MAIL_PLUS_PGSQL_ERROR_LEN  256


/* the states of a connection */

#define NGX_MAIL_PLUS_PGSQL_CLOSED      0
#define NGX_MAIL_PLUS_PGSQL_CONNECTING  1
#define NGX_MAIL_PLUS_PGSQL_IDLE        2
#define NGX_MAIL_PLUS_PGSQL_BUSY        3


typedef struct {
    char                       *conninfo;
    char                       *query[2];  /* PASSDB, USERDB */
} ngx_mail_plus_dir_pgsql_conf_t;


typedef struct ngx_mail_plus_dir_pgsql_s  ngx_mail_plus_dir_pgsql_t;


typedef struct {
    PGconn                     *pg;
    ngx_connection_t           *c;         /* watches libpq's socket */
    ngx_mail_plus_dir_pgsql_t  *pgsql;
    ngx_mail_plus_dir_req_t    *req;       /* BUSY: the lookup it runs */
    ngx_event_t                 timer;
    ngx_uint_t                  state;
    ngx_uint_t                  number;
    unsigned                    flushing:1;
    unsigned                    answered:1;
    unsigned                    broken:1;
    unsigned                    reused:1;
} ngx_mail_plus_dir_pgsql_conn_t;


/* a worker's */

struct ngx_mail_plus_dir_pgsql_s {
    ngx_mail_plus_dir_t             *dir;
    ngx_mail_plus_dir_pgsql_conf_t  *conf;
    ngx_mail_plus_dir_pgsql_conn_t  *conns;
    ngx_queue_t                      waiting;
    ngx_uint_t                       nwaiting;
    ngx_event_t                      deadline;  /* of the oldest waiting */
    ngx_log_t                       *log;
    ngx_str_t                        error;   /* the last connection's */
    u_char                           error_buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];
};


/* a lookup's, while the source has it (req->ctx) */

typedef struct {
    ngx_mail_plus_dir_pgsql_conn_t  *pc;      /* the connection running it */
    ngx_msec_t                       queued;  /* when it began to wait */
} ngx_mail_plus_dir_pgsql_req_t;


/* the pool and the lookups that wait (ngx_mail_plus_dir_pgsql.c) */

void ngx_mail_plus_dir_pgsql_dispatch(ngx_mail_plus_dir_pgsql_t *pgsql);
void ngx_mail_plus_dir_pgsql_fail_waiting(ngx_mail_plus_dir_pgsql_t *pgsql);
void ngx_mail_plus_dir_pgsql_finish(ngx_mail_plus_dir_pgsql_conn_t *pc);

/* a connection (ngx_mail_plus_dir_pgsql_conn.c) */

ngx_int_t ngx_mail_plus_dir_pgsql_connect(ngx_mail_plus_dir_pgsql_conn_t *pc);
ngx_int_t ngx_mail_plus_dir_pgsql_send(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_mail_plus_dir_req_t *req);
void ngx_mail_plus_dir_pgsql_close(ngx_mail_plus_dir_pgsql_conn_t *pc);
void ngx_mail_plus_dir_pgsql_timeout(ngx_event_t *ev);

/* a result, an answer, an error (ngx_mail_plus_dir_pgsql_result.c) */

void ngx_mail_plus_dir_pgsql_result(ngx_mail_plus_dir_pgsql_conn_t *pc,
    PGresult *res);
void ngx_mail_plus_dir_pgsql_answer(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t result, ngx_str_t *error);
void ngx_mail_plus_dir_pgsql_set_error(ngx_mail_plus_dir_pgsql_t *pgsql,
    const char *text);
size_t ngx_mail_plus_dir_pgsql_clean(u_char *dst, size_t size,
    const char *text);

#endif


#endif /* _NGX_MAIL_PLUS_DIR_PGSQL_H_INCLUDED_ */
