
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"

#if (NGX_MAIL_PLUS_PGSQL)
#include <libpq-fe.h>
#endif


/*
 * The "pgsql" directory: a PostgreSQL database asked through libpq's
 * non-blocking calls in the event loop.  The login is the query's only
 * parameter, $1, never put into its text.  One row answers: its column
 * "password" is the hash the router checks, the other columns by name are
 * the user's extra fields (pool, host, port, user, destuser, proxy,
 * nologin, reason, nopassword; others are ignored).  No row: the user is
 * unknown here; several: the answer is a temporary failure.
 *
 * Each worker keeps up to "connections" connections, made at the first
 * lookups that need them and kept for the next.  A lookup takes an idle
 * connection, or waits in a queue (of at most 1000) for one.  libpq owns
 * each socket: an nginx connection only watches it, and is freed without
 * closing it; while a connection is being made, libpq may replace its
 * socket at any step, so the socket is watched anew after each.
 */


#if (NGX_MAIL_PLUS_PGSQL)

#define NGX_MAIL_PLUS_PGSQL_WAITING    1000
#define NGX_MAIL_PLUS_PGSQL_ERROR_LEN  256
#define NGX_MAIL_PLUS_PGSQL_HASH_LEN   1024

#define NGX_MAIL_PLUS_PGSQL_BOOLOID    16


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
    ngx_log_t                       *log;
    ngx_str_t                        error;   /* the last connection's */
    u_char                           error_buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];
};


static char *ngx_mail_plus_dir_pgsql_conninfo(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_param_t *param,
    char **conninfo);
static void ngx_mail_plus_dir_pgsql_hosts(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_param_t *param,
    PQconninfoOption *opts);
static char *ngx_mail_plus_dir_pgsql_query(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_param_t *param,
    char **query);
static ngx_int_t ngx_mail_plus_dir_pgsql_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static void ngx_mail_plus_dir_pgsql_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static ngx_int_t ngx_mail_plus_dir_pgsql_lookup(ngx_mail_plus_dir_req_t *req);
static void ngx_mail_plus_dir_pgsql_dispatch(ngx_mail_plus_dir_pgsql_t *pgsql);
static ngx_uint_t ngx_mail_plus_dir_pgsql_alive(
    ngx_mail_plus_dir_pgsql_t *pgsql, ngx_uint_t state);
static void ngx_mail_plus_dir_pgsql_fail_waiting(
    ngx_mail_plus_dir_pgsql_t *pgsql);
static ngx_int_t ngx_mail_plus_dir_pgsql_connect(
    ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_connect_step(
    ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_connect_failed(
    ngx_mail_plus_dir_pgsql_conn_t *pc);
static ngx_int_t ngx_mail_plus_dir_pgsql_watch(
    ngx_mail_plus_dir_pgsql_conn_t *pc, PostgresPollingStatusType poll);
static void ngx_mail_plus_dir_pgsql_forget(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_uint_t flags);
static void ngx_mail_plus_dir_pgsql_close(ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_handler(ngx_event_t *ev);
static void ngx_mail_plus_dir_pgsql_timeout(ngx_event_t *ev);
static ngx_int_t ngx_mail_plus_dir_pgsql_send(
    ngx_mail_plus_dir_pgsql_conn_t *pc, ngx_mail_plus_dir_req_t *req);
static void ngx_mail_plus_dir_pgsql_idle(ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_busy(ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_finish(ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_result(ngx_mail_plus_dir_pgsql_conn_t *pc,
    PGresult *res);
static void ngx_mail_plus_dir_pgsql_row(ngx_mail_plus_dir_req_t *req,
    PGresult *res);
static void ngx_mail_plus_dir_pgsql_answer(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t result, ngx_str_t *error);
static void ngx_mail_plus_dir_pgsql_set_error(ngx_mail_plus_dir_pgsql_t *pgsql,
    const char *text);
static size_t ngx_mail_plus_dir_pgsql_clean(u_char *dst, size_t size,
    const char *text);
static void ngx_mail_plus_dir_pgsql_notice(void *arg, const char *message);

#endif


static char *ngx_mail_plus_dir_pgsql_conf(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir);


ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_pgsql_ops = {
    ngx_string("pgsql"),
    ngx_mail_plus_dir_pgsql_conf,
#if (NGX_MAIL_PLUS_PGSQL)
    ngx_mail_plus_dir_pgsql_init_process,
    ngx_mail_plus_dir_pgsql_exit_process,
    ngx_mail_plus_dir_pgsql_lookup
#else
    NULL,
    NULL,
    NULL
#endif
};


#if !(NGX_MAIL_PLUS_PGSQL)

static char *
ngx_mail_plus_dir_pgsql_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "directory \"%V\" of type \"pgsql\": the module was "
                       "built without libpq", &dir->name);
    return NGX_CONF_ERROR;
}

#else


/*
 * "connect", "query" and the optional "recipient_query"; nothing is
 * connected at "nginx -t" nor at start: the first lookup connects
 */

static char *
ngx_mail_plus_dir_pgsql_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    char                            *rv;
    ngx_mail_plus_dir_param_t       *param;
    ngx_mail_plus_dir_pgsql_conf_t  *pcf;

    pcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_dir_pgsql_conf_t));
    if (pcf == NULL) {
        return NGX_CONF_ERROR;
    }

    param = ngx_mail_plus_dir_param(dir, "connect");

    if (param == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "directory \"%V\" in %s:%ui needs \"connect\"",
                      &dir->name, dir->file, dir->line);
        return NGX_CONF_ERROR;
    }

    rv = ngx_mail_plus_dir_pgsql_conninfo(cf, dir, param, &pcf->conninfo);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    param = ngx_mail_plus_dir_param(dir, "query");

    if (param == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "directory \"%V\" in %s:%ui needs \"query\"",
                      &dir->name, dir->file, dir->line);
        return NGX_CONF_ERROR;
    }

    rv = ngx_mail_plus_dir_pgsql_query(cf, dir, param,
                                       &pcf->query[NGX_MAIL_PLUS_DIR_PASSDB]);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    param = ngx_mail_plus_dir_param(dir, "recipient_query");

    if (param) {
        rv = ngx_mail_plus_dir_pgsql_query(cf, dir, param,
                                       &pcf->query[NGX_MAIL_PLUS_DIR_USERDB]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        dir->userdb = 1;
    }

    dir->conf = pcf;

    return NGX_CONF_OK;
}


/*
 * libpq's connection string, parsed as libpq will; a host given by name
 * is warned of: libpq resolves it with a call that blocks the worker
 */

static char *
ngx_mail_plus_dir_pgsql_conninfo(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_param_t *param, char **conninfo)
{
    char              *err;
    size_t             len;
    ngx_str_t         *value;
    PQconninfoOption  *opts;
    u_char             buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];

    value = param->args->elts;

    if (param->args->nelts != 1 || value[0].len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"connect\" of directory \"%V\" in %s:%ui",
                      &dir->name, param->file, param->line);
        return NGX_CONF_ERROR;
    }

    *conninfo = (char *) ngx_pnalloc(cf->pool, value[0].len + 1);
    if (*conninfo == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn((u_char *) *conninfo, value[0].data, value[0].len + 1);

    err = NULL;
    opts = PQconninfoParse(*conninfo, &err);

    if (opts == NULL) {
        len = ngx_mail_plus_dir_pgsql_clean(buf, sizeof(buf),
                                            err ? err : "out of memory");
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"connect\" of directory \"%V\" in %s:%ui: "
                      "%*s", &dir->name, param->file, param->line, len, buf);

        if (err) {
            PQfreemem(err);
        }

        return NGX_CONF_ERROR;
    }

    ngx_mail_plus_dir_pgsql_hosts(cf, dir, param, opts);

    PQconninfoFree(opts);

    return NGX_CONF_OK;
}


/*
 * each host of the connection string: an address, a socket's directory,
 * or a name, which is warned of
 */

static void
ngx_mail_plus_dir_pgsql_hosts(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_param_t *param, PQconninfoOption *opts)
{
    u_char            *p, *last, *start;
    size_t             len;
    ngx_str_t          host;
    ngx_uint_t         hostaddr;
    PQconninfoOption  *opt;

    hostaddr = 0;
    ngx_str_null(&host);

    for (opt = opts; opt->keyword; opt++) {
        if (opt->val == NULL || opt->val[0] == '\0') {
            continue;
        }

        if (ngx_strcmp(opt->keyword, "hostaddr") == 0) {
            hostaddr = 1;

        } else if (ngx_strcmp(opt->keyword, "host") == 0) {
            host.data = (u_char *) opt->val;
            host.len = ngx_strlen(opt->val);
        }
    }

    p = host.data;
    last = host.data + host.len;

    while (!hostaddr && p < last) {

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        len = p - start;
        p++;

        if (len == 0 || start[0] == '/' || start[0] == '@'
            || ngx_inet_addr(start, len) != INADDR_NONE)
        {
            continue;
        }

#if (NGX_HAVE_INET6)
        {
        struct in6_addr  in6;

        if (ngx_inet6_addr(start, len, in6.s6_addr) == NGX_OK) {
            continue;
        }
        }
#endif

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "directory \"%V\" in %s:%ui: the host \"%*s\" is a "
                      "name, which libpq resolves with a blocking call at "
                      "each connection; give an address, or \"hostaddr\"",
                      &dir->name, param->file, param->line, len, start);
        break;
    }
}


/*
 * a query: the login is the parameter $1, which must be there outside a
 * quoted string, and the only one; what looks like a substitution into
 * the text ('%u', %s, %{user}) is refused, since none is ever made
 */

static char *
ngx_mail_plus_dir_pgsql_query(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_param_t *param, char **query)
{
    u_char     *p, *last, quote;
    char       *err;
    ngx_str_t  *value;
    ngx_int_t   n;
    ngx_uint_t  found;

    value = param->args->elts;

    if (param->args->nelts != 1 || value[0].len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"%V\" of directory \"%V\" in %s:%ui",
                      &param->name, &dir->name, param->file, param->line);
        return NGX_CONF_ERROR;
    }

    p = value[0].data;
    last = p + value[0].len;

    quote = 0;
    found = 0;
    err = NULL;

    for ( /* void */ ; p < last && err == NULL; p++) {

        if (*p == '%' && p + 1 < last
            && (p[1] == '{' || (p[1] >= 'a' && p[1] <= 'z')
                || (p[1] >= 'A' && p[1] <= 'Z')))
        {
            err = "has a substitution in its text (\"%x\" or \"%{...}\"), "
                  "which is never made: the login is the parameter $1";
            break;
        }

        if (quote) {
            if (*p == quote) {
                quote = 0;
            }

            continue;
        }

        if (*p == '\'' || *p == '"') {
            quote = *p;
            continue;
        }

        if (*p != '$' || p + 1 == last || p[1] < '0' || p[1] > '9') {
            continue;
        }

        for (n = 0, p++; p < last && *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');

            if (n > 1) {
                break;
            }
        }

        p--;

        if (n != 1) {
            err = "has a parameter other than $1, the login";
        }

        found = 1;
    }

    if (err == NULL && !found) {
        err = "has no parameter $1 (outside a quoted string) for the login";
    }

    if (err) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "the \"%V\" of directory \"%V\" in %s:%ui %s",
                      &param->name, &dir->name, param->file, param->line,
                      err);
        return NGX_CONF_ERROR;
    }

    *query = (char *) ngx_pnalloc(cf->pool, value[0].len + 1);
    if (*query == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn((u_char *) *query, value[0].data, value[0].len + 1);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_mail_plus_dir_pgsql_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir)
{
    ngx_uint_t                       i;
    ngx_mail_plus_dir_pgsql_t       *pgsql;
    ngx_mail_plus_dir_pgsql_conn_t  *pc;

    pgsql = ngx_pcalloc(cycle->pool, sizeof(ngx_mail_plus_dir_pgsql_t));
    if (pgsql == NULL) {
        return NGX_ERROR;
    }

    pgsql->conns = ngx_pcalloc(cycle->pool, dir->connections
                                      * sizeof(ngx_mail_plus_dir_pgsql_conn_t));
    if (pgsql->conns == NULL) {
        return NGX_ERROR;
    }

    pgsql->dir = dir;
    pgsql->conf = dir->conf;
    pgsql->log = cycle->log;
    pgsql->error.data = pgsql->error_buf;

    ngx_queue_init(&pgsql->waiting);

    for (i = 0; i < dir->connections; i++) {
        pc = &pgsql->conns[i];

        pc->pgsql = pgsql;
        pc->number = i;
        pc->timer.handler = ngx_mail_plus_dir_pgsql_timeout;
        pc->timer.data = pc;
        pc->timer.log = cycle->log;
    }

    dir->data = pgsql;

    return NGX_OK;
}


static void
ngx_mail_plus_dir_pgsql_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir)
{
    ngx_uint_t                  i;
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = dir->data;

    if (pgsql == NULL) {
        return;
    }

    for (i = 0; i < dir->connections; i++) {
        ngx_mail_plus_dir_pgsql_close(&pgsql->conns[i]);
    }
}


/*
 * a lookup waits in the queue, which a connection takes it from at once
 * if one is idle; none is connected, and none can be: answered now
 */

static ngx_int_t
ngx_mail_plus_dir_pgsql_lookup(ngx_mail_plus_dir_req_t *req)
{
    ngx_str_t                   err;
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = req->dir->data;

    if (pgsql == NULL) {
        ngx_str_set(&err, "not set up in this process");
        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return NGX_OK;
    }

    if (pgsql->conf->query[req->type] == NULL) {
        req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
        return NGX_OK;
    }

    if (pgsql->nwaiting >= NGX_MAIL_PLUS_PGSQL_WAITING) {
        ngx_str_set(&err, "too many lookups wait for a connection");
        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return NGX_OK;
    }

    ngx_queue_insert_tail(&pgsql->waiting, &req->queue);
    pgsql->nwaiting++;
    req->ctx = NULL;

    ngx_mail_plus_dir_pgsql_dispatch(pgsql);

    if (req->ctx == NULL
        && ngx_mail_plus_dir_pgsql_alive(pgsql, NGX_MAIL_PLUS_PGSQL_CLOSED)
           == 0)
    {
        /* it is the only one waiting: a connection lives while any does */

        ngx_queue_remove(&req->queue);
        pgsql->nwaiting--;

        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                       &pgsql->error);
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: pgsql \"%V\" lookup %p %s", &req->dir->name, req,
                   req->ctx ? "sent" : "waits for a connection");

    return NGX_AGAIN;
}


/*
 * the lookups that wait go to idle connections; for those left, closed
 * connections start connecting, one for each lookup beyond those already
 * connecting, each tried once here
 */

static void
ngx_mail_plus_dir_pgsql_dispatch(ngx_mail_plus_dir_pgsql_t *pgsql)
{
    ngx_uint_t                       i, connecting;
    ngx_queue_t                     *q;
    ngx_mail_plus_dir_req_t         *req;
    ngx_mail_plus_dir_pgsql_conn_t  *pc;

    for (i = 0; i < pgsql->dir->connections && pgsql->nwaiting; i++) {

        pc = &pgsql->conns[i];

        if (pc->state != NGX_MAIL_PLUS_PGSQL_IDLE) {
            continue;
        }

        q = ngx_queue_head(&pgsql->waiting);
        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);

        ngx_queue_remove(q);
        pgsql->nwaiting--;

        if (ngx_mail_plus_dir_pgsql_send(pc, req) != NGX_OK) {

            /* a connection the server closed while it was idle */

            ngx_queue_insert_head(&pgsql->waiting, q);
            pgsql->nwaiting++;

            ngx_mail_plus_dir_pgsql_close(pc);
        }
    }

    connecting = ngx_mail_plus_dir_pgsql_alive(pgsql,
                                               NGX_MAIL_PLUS_PGSQL_CONNECTING);

    for (i = 0; i < pgsql->dir->connections && pgsql->nwaiting > connecting;
         i++)
    {
        pc = &pgsql->conns[i];

        if (pc->state != NGX_MAIL_PLUS_PGSQL_CLOSED) {
            continue;
        }

        if (ngx_mail_plus_dir_pgsql_connect(pc) == NGX_OK) {
            connecting++;
        }
    }
}


/* the connections in a state (NGX_MAIL_PLUS_PGSQL_CLOSED: not closed) */

static ngx_uint_t
ngx_mail_plus_dir_pgsql_alive(ngx_mail_plus_dir_pgsql_t *pgsql,
    ngx_uint_t state)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < pgsql->dir->connections; i++) {

        if (state == NGX_MAIL_PLUS_PGSQL_CLOSED
            ? pgsql->conns[i].state != NGX_MAIL_PLUS_PGSQL_CLOSED
            : pgsql->conns[i].state == state)
        {
            n++;
        }
    }

    return n;
}


/*
 * no connection is left, nor being made (and none is tried again after a
 * failure to connect): the lookups that wait fail
 */

static void
ngx_mail_plus_dir_pgsql_fail_waiting(ngx_mail_plus_dir_pgsql_t *pgsql)
{
    ngx_queue_t               waiting, *q;
    ngx_mail_plus_dir_req_t  *req;

    if (pgsql->nwaiting == 0
        || ngx_mail_plus_dir_pgsql_alive(pgsql, NGX_MAIL_PLUS_PGSQL_CLOSED))
    {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\": %ui waiting lookups fail",
                   &pgsql->dir->name, pgsql->nwaiting);

    /* the handlers may ask again: they find the queue empty */

    ngx_queue_init(&waiting);
    ngx_queue_add(&waiting, &pgsql->waiting);
    ngx_queue_init(&pgsql->waiting);
    pgsql->nwaiting = 0;

    while (!ngx_queue_empty(&waiting)) {
        q = ngx_queue_head(&waiting);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);

        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                       &pgsql->error);
        ngx_mail_plus_dir_done(req);
    }
}


/* a connection started: NGX_ERROR, if it failed at once (pgsql->error) */

static ngx_int_t
ngx_mail_plus_dir_pgsql_connect(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = pc->pgsql;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui connecting",
                   &pgsql->dir->name, pc->number);

    pc->pg = PQconnectStart(pgsql->conf->conninfo);

    if (pc->pg == NULL) {
        ngx_mail_plus_dir_pgsql_set_error(pgsql, "out of memory");
        return NGX_ERROR;
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_CONNECTING;
    pc->reused = 0;

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        ngx_mail_plus_dir_pgsql_set_error(pgsql, PQerrorMessage(pc->pg));
        goto failed;
    }

    (void) PQsetNoticeProcessor(pc->pg, ngx_mail_plus_dir_pgsql_notice, pc);

    if (ngx_mail_plus_dir_pgsql_watch(pc, PGRES_POLLING_WRITING) != NGX_OK) {
        goto failed;
    }

    ngx_add_timer(&pc->timer, pgsql->dir->timeout);

    return NGX_OK;

failed:

    ngx_mail_plus_dir_pgsql_close(pc);
    ngx_mail_plus_dir_state(pgsql->dir, 0, &pgsql->error, pgsql->log);

    return NGX_ERROR;
}


/* the socket is ready as libpq asked: its next step of connecting */

static void
ngx_mail_plus_dir_pgsql_connect_step(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_pgsql_t  *pgsql;
    PostgresPollingStatusType   poll;

    pgsql = pc->pgsql;

    /* libpq may close the socket and open another, of the same number */

    ngx_mail_plus_dir_pgsql_forget(pc, 0);

    poll = PQconnectPoll(pc->pg);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui: connecting, "
                   "step %d", &pgsql->dir->name, pc->number, poll);

    switch (poll) {

    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:

        if (ngx_mail_plus_dir_pgsql_watch(pc, poll) != NGX_OK) {
            ngx_mail_plus_dir_pgsql_connect_failed(pc);
        }

        return;

    case PGRES_POLLING_OK:
        break;

    default:
        ngx_mail_plus_dir_pgsql_set_error(pgsql, PQerrorMessage(pc->pg));
        ngx_mail_plus_dir_pgsql_connect_failed(pc);
        return;
    }

    if (PQsetnonblocking(pc->pg, 1) != 0
        || ngx_mail_plus_dir_pgsql_watch(pc, PGRES_POLLING_READING) != NGX_OK)
    {
        ngx_mail_plus_dir_pgsql_set_error(pgsql, PQerrorMessage(pc->pg));
        ngx_mail_plus_dir_pgsql_connect_failed(pc);
        return;
    }

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_IDLE;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui connected, "
                   "%ui lookups wait", &pgsql->dir->name, pc->number,
                   pgsql->nwaiting);

    ngx_mail_plus_dir_state(pgsql->dir, 1, NULL, pgsql->log);

    ngx_mail_plus_dir_pgsql_dispatch(pgsql);
    ngx_mail_plus_dir_pgsql_fail_waiting(pgsql);
}


/* a connection could not be made (pgsql->error): not tried again now */

static void
ngx_mail_plus_dir_pgsql_connect_failed(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = pc->pgsql;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui failed: %V",
                   &pgsql->dir->name, pc->number, &pgsql->error);

    ngx_mail_plus_dir_pgsql_close(pc);
    ngx_mail_plus_dir_state(pgsql->dir, 0, &pgsql->error, pgsql->log);
    ngx_mail_plus_dir_pgsql_fail_waiting(pgsql);
}


/*
 * libpq's socket watched by a new nginx connection: for reading or
 * writing while connecting, for both once connected
 */

static ngx_int_t
ngx_mail_plus_dir_pgsql_watch(ngx_mail_plus_dir_pgsql_conn_t *pc,
    PostgresPollingStatusType poll)
{
    ngx_int_t          rc;
    ngx_socket_t       s;
    ngx_connection_t  *c;

    ngx_mail_plus_dir_pgsql_forget(pc, 0);

    s = PQsocket(pc->pg);

    if (s == (ngx_socket_t) -1) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, "no socket");
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, pc->pgsql->log);

    if (c == NULL) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                          "no free worker connection");
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = ngx_mail_plus_dir_pgsql_handler;
    c->write->handler = ngx_mail_plus_dir_pgsql_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    pc->c = c;

    if (poll == PGRES_POLLING_WRITING) {
        rc = ngx_handle_write_event(c->write, 0);

    } else {
        rc = ngx_handle_read_event(c->read, 0);
    }

    if (rc != NGX_OK) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, "cannot watch the socket");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * the nginx connection of a socket freed, the socket left to libpq:
 * NGX_CLOSE_EVENT when libpq closes it next
 */

static void
ngx_mail_plus_dir_pgsql_forget(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_uint_t flags)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (c == NULL) {
        return;
    }

    pc->c = NULL;

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->active || c->read->disabled) {
        ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active || c->write->disabled) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
}


static void
ngx_mail_plus_dir_pgsql_close(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->pg) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pc->pgsql->log, 0,
                       "router: pgsql \"%V\" connection %ui closed",
                       &pc->pgsql->dir->name, pc->number);

        ngx_mail_plus_dir_pgsql_forget(pc, NGX_CLOSE_EVENT);

        PQfinish(pc->pg);
        pc->pg = NULL;
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_CLOSED;
    pc->req = NULL;
    pc->flushing = 0;
}


static void
ngx_mail_plus_dir_pgsql_handler(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_mail_plus_dir_pgsql_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "router: pgsql \"%V\" connection %ui: %s event, state %ui",
                   &pc->pgsql->dir->name, pc->number,
                   ev->write ? "write" : "read", pc->state);

    switch (pc->state) {

    case NGX_MAIL_PLUS_PGSQL_CONNECTING:
        ngx_mail_plus_dir_pgsql_connect_step(pc);
        return;

    case NGX_MAIL_PLUS_PGSQL_IDLE:
        if (!ev->write) {
            ngx_mail_plus_dir_pgsql_idle(pc);
        }

        return;

    case NGX_MAIL_PLUS_PGSQL_BUSY:
        ngx_mail_plus_dir_pgsql_busy(pc);
        return;
    }
}


/* no answer in time: the connection is closed, which cancels the query */

static void
ngx_mail_plus_dir_pgsql_timeout(ngx_event_t *ev)
{
    ngx_mail_plus_dir_pgsql_conn_t  *pc;

    pc = ev->data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "router: pgsql \"%V\" connection %ui: timer fired, "
                   "state %ui", &pc->pgsql->dir->name, pc->number, pc->state);

    if (pc->state == NGX_MAIL_PLUS_PGSQL_CONNECTING) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                          "timed out connecting");
        ngx_mail_plus_dir_pgsql_connect_failed(pc);
        return;
    }

    if (pc->state == NGX_MAIL_PLUS_PGSQL_BUSY) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                          "timed out waiting for the query");
        pc->broken = 1;
        ngx_mail_plus_dir_pgsql_finish(pc);
    }
}


/* the query of a lookup sent: NGX_ERROR, the connection is broken */

static ngx_int_t
ngx_mail_plus_dir_pgsql_send(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_mail_plus_dir_req_t *req)
{
    int          rc;
    char        *login;
    const char  *values[1];

    login = (char *) ngx_pnalloc(req->pool, req->login.len + 1);
    if (login == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) login, req->login.data, req->login.len + 1);

    values[0] = login;

    if (!PQsendQueryParams(pc->pg, pc->pgsql->conf->query[req->type], 1,
                           NULL, values, NULL, NULL, 0))
    {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, PQerrorMessage(pc->pg));

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: pgsql \"%V\" connection %ui cannot send: %V",
                       &req->dir->name, pc->number, &pc->pgsql->error);
        return NGX_ERROR;
    }

    rc = PQflush(pc->pg);

    if (rc == -1) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: pgsql \"%V\" connection %ui%s sent the query "
                   "for \"%V\"", &req->dir->name, pc->number,
                   pc->reused ? " (reused)" : "", &req->login);

    if (rc == 1) {
        pc->c->write->ready = 0;

        if (ngx_handle_write_event(pc->c->write, 0) != NGX_OK) {
            ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                              "cannot watch the socket");
            return NGX_ERROR;
        }
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_BUSY;
    pc->req = req;
    pc->flushing = (rc == 1);
    pc->answered = 0;
    pc->broken = 0;

    req->ctx = pc;

    ngx_add_timer(&pc->timer, pc->pgsql->dir->timeout);

    return NGX_OK;
}


/* an idle connection readable: the server closed it, or a notice */

static void
ngx_mail_plus_dir_pgsql_idle(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    PGnotify  *notify;

    if (PQconsumeInput(pc->pg) && PQstatus(pc->pg) == CONNECTION_OK) {

        while ((notify = PQnotifies(pc->pg)) != NULL) {
            PQfreemem(notify);
        }

        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pc->pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui closed by the server "
                   "while idle", &pc->pgsql->dir->name, pc->number);

    ngx_mail_plus_dir_pgsql_close(pc);
}


/* the query is being sent, or its answer read */

static void
ngx_mail_plus_dir_pgsql_busy(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    int        rc;
    PGresult  *res;

    if (pc->flushing) {
        rc = PQflush(pc->pg);

        if (rc == -1) {
            goto broken;
        }

        pc->flushing = (rc == 1);
    }

    if (!PQconsumeInput(pc->pg)) {
        goto broken;
    }

    while (!PQisBusy(pc->pg)) {

        res = PQgetResult(pc->pg);

        if (res == NULL) {
            ngx_mail_plus_dir_pgsql_finish(pc);
            return;
        }

        ngx_mail_plus_dir_pgsql_result(pc, res);

        PQclear(res);
    }

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        goto broken;
    }

    if (ngx_handle_read_event(pc->c->read, 0) != NGX_OK) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, "cannot watch the socket");
        pc->broken = 1;
        ngx_mail_plus_dir_pgsql_finish(pc);
    }

    return;

broken:

    ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, PQerrorMessage(pc->pg));
    pc->broken = 1;
    ngx_mail_plus_dir_pgsql_finish(pc);
}


/*
 * the lookup answered (or failed: a broken connection is closed), the
 * connection takes the next, and the directory is told last: its caller
 * may ask again at once
 */

static void
ngx_mail_plus_dir_pgsql_finish(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_req_t    *req;
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = pc->pgsql;
    req = pc->req;

    pc->req = NULL;
    req->ctx = NULL;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (!pc->answered || pc->broken) {

        if (pc->broken) {
            ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                           &pgsql->error);
        }

        if (!pc->answered) {
            ngx_str_set(&req->error, "no answer to the query");
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        }
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: pgsql \"%V\" connection %ui answered %ui%s",
                   &pgsql->dir->name, pc->number, req->result,
                   pc->broken ? ", the connection is broken" : "");

    if (pc->broken) {
        ngx_mail_plus_dir_pgsql_close(pc);
        ngx_mail_plus_dir_state(pgsql->dir, 0, &pgsql->error, pgsql->log);

    } else {
        pc->state = NGX_MAIL_PLUS_PGSQL_IDLE;
        pc->reused = 1;
        ngx_mail_plus_dir_state(pgsql->dir, 1, NULL, pgsql->log);
    }

    ngx_mail_plus_dir_pgsql_dispatch(pgsql);
    ngx_mail_plus_dir_pgsql_fail_waiting(pgsql);

    ngx_mail_plus_dir_done(req);
}


/*
 * the query's result: the rows, or an error; an error of a lost
 * connection (class 08) or of a server going down (57P01-57P03) breaks
 * the connection
 */

static void
ngx_mail_plus_dir_pgsql_result(ngx_mail_plus_dir_pgsql_conn_t *pc,
    PGresult *res)
{
    int                       n;
    size_t                    len;
    char                     *state, *text;
    ngx_str_t                 err;
    ngx_mail_plus_dir_req_t  *req;
    u_char                    buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];

    req = pc->req;

    if (pc->answered) {
        return;
    }

    pc->answered = 1;

    switch (PQresultStatus(res)) {

    case PGRES_TUPLES_OK:

        n = PQntuples(res);

        if (n == 0) {
            req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
            return;
        }

        if (n > 1 && req->type == NGX_MAIL_PLUS_DIR_PASSDB) {
            len = ngx_snprintf(buf, sizeof(buf), "ambiguous: the query "
                               "returned %d rows", n) - buf;
            err.data = buf;
            err.len = len;

            ngx_log_error(NGX_LOG_ERR, req->log, 0,
                          "directory \"%V\" for \"%V\": %V",
                          &req->dir->name, &req->login, &err);

            ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                           &err);
            return;
        }

        ngx_mail_plus_dir_pgsql_row(req, res);
        return;

    case PGRES_FATAL_ERROR:
    case PGRES_NONFATAL_ERROR:
    case PGRES_BAD_RESPONSE:

        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

        if (text == NULL) {
            text = PQresultErrorMessage(res);
        }

        if (state
            && ((state[0] == '0' && state[1] == '8')
                || ngx_strncmp(state, "57P0", 4) == 0))
        {
            ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, text);
            pc->broken = 1;
            return;
        }

        len = ngx_snprintf(buf, sizeof(buf), "query failed: %s ",
                           state ? state : "") - buf;
        len += ngx_mail_plus_dir_pgsql_clean(buf + len, sizeof(buf) - len,
                                             text);
        err.data = buf;
        err.len = len;

        ngx_log_error(NGX_LOG_ERR, req->log, 0,
                      "directory \"%V\" for \"%V\": %V",
                      &req->dir->name, &req->login, &err);

        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return;

    default:
        ngx_str_set(&err, "the query returned no rows");
        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return;
    }
}


/*
 * the row of a user: "password" the hash, the other columns the fields;
 * a NULL is no field, a boolean is "y" or "n", a control character or a
 * value the field does not take is an error of the data
 */

static void
ngx_mail_plus_dir_pgsql_row(ngx_mail_plus_dir_req_t *req, PGresult *res)
{
    int         i, n;
    size_t      len;
    u_char     *p;
    ngx_str_t   name, value, err;
    u_char      buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];

    n = PQnfields(res);

    for (i = 0; i < n; i++) {

        if (PQgetisnull(res, 0, i)) {
            continue;
        }

        name.data = (u_char *) PQfname(res, i);
        name.len = ngx_strlen(name.data);

        value.data = (u_char *) PQgetvalue(res, 0, i);
        value.len = PQgetlength(res, 0, i);

        if (PQftype(res, i) == NGX_MAIL_PLUS_PGSQL_BOOLOID && value.len == 1) {
            value.data = (u_char *) (value.data[0] == 't' ? "y" : "n");
        }

        if (name.len > 64 || ngx_mail_plus_text_has_ctl(&name)) {
            ngx_str_set(&err, "a column name that is too long or has a "
                              "control character");
            goto invalid;
        }

        if (ngx_mail_plus_text_has_ctl(&value)) {
            len = ngx_snprintf(buf, sizeof(buf), "the column \"%V\" has a "
                               "control character", &name) - buf;
            goto failed;
        }

        p = ngx_pnalloc(req->pool, value.len);
        if (p == NULL) {
            ngx_str_set(&err, "out of memory");
            goto invalid;
        }

        value.data = ngx_cpymem(p, value.data, value.len) - value.len;

        if (name.len == sizeof("password") - 1
            && ngx_strncasecmp(name.data, (u_char *) "password", name.len) == 0)
        {
            if (value.len > NGX_MAIL_PLUS_PGSQL_HASH_LEN) {
                ngx_str_set(&err, "the column \"password\" is too long");
                goto invalid;
            }

            if (req->type == NGX_MAIL_PLUS_DIR_PASSDB) {
                req->hash = value;
            }

            continue;
        }

        if (ngx_mail_plus_user_field(&req->fields, &name, &value) != NGX_OK) {
            len = ngx_snprintf(buf, sizeof(buf), "the column \"%V\" has a "
                               "value that is not valid", &name) - buf;
            goto failed;
        }
    }

    req->result = NGX_MAIL_PLUS_DIR_FOUND;

    return;

failed:

    err.data = buf;
    err.len = len;

invalid:

    ngx_log_error(NGX_LOG_ERR, req->log, 0,
                  "directory \"%V\" for \"%V\": %V",
                  &req->dir->name, &req->login, &err);

    ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
}


/* an answer, with its error copied into the request's pool */

static void
ngx_mail_plus_dir_pgsql_answer(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t result, ngx_str_t *error)
{
    req->result = result;

    if (result != NGX_MAIL_PLUS_DIR_TEMPFAIL) {
        return;
    }

    req->hash.len = 0;
    ngx_memzero(&req->fields, sizeof(ngx_mail_plus_user_fields_t));

    req->error.data = ngx_pnalloc(req->pool, error->len);

    if (req->error.data == NULL) {
        ngx_str_set(&req->error, "out of memory");
        return;
    }

    req->error.len = error->len;
    ngx_memcpy(req->error.data, error->data, error->len);
}


/* the last connection's error, from libpq's text */

static void
ngx_mail_plus_dir_pgsql_set_error(ngx_mail_plus_dir_pgsql_t *pgsql,
    const char *text)
{
    pgsql->error.len = ngx_mail_plus_dir_pgsql_clean(pgsql->error_buf,
                                                     sizeof(pgsql->error_buf),
                                                     text);

    if (pgsql->error.len == 0) {
        pgsql->error.len = ngx_cpymem(pgsql->error_buf, "unknown error",
                                      sizeof("unknown error") - 1)
                           - pgsql->error_buf;
    }
}


/*
 * libpq's or the server's text for a log line: its first line, other
 * control characters and runs of spaces as one space, none at either
 * end; cut to "size"
 */

static size_t
ngx_mail_plus_dir_pgsql_clean(u_char *dst, size_t size, const char *text)
{
    u_char        *p, *last;
    const u_char  *s;

    p = dst;
    last = dst + size;

    for (s = (const u_char *) text; *s && *s != '\n' && p < last; s++) {

        if (*s > 0x20 && *s != 0x7f) {
            *p++ = *s;
            continue;
        }

        if (p > dst && p[-1] != ' ') {
            *p++ = ' ';
        }
    }

    while (p > dst && p[-1] == ' ') {
        p--;
    }

    return p - dst;
}


/* the server's notices (libpq writes them to stderr otherwise) */

static void
ngx_mail_plus_dir_pgsql_notice(void *arg, const char *message)
{
#if (NGX_DEBUG)
    ngx_mail_plus_dir_pgsql_conn_t *pc = arg;

    size_t  n;

    for (n = 0; n < 200 && (u_char) message[n] >= 0x20; n++) {
        /* void */
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, pc->pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui: notice \"%*s\"",
                   &pc->pgsql->dir->name, pc->number, n, message);
#endif
}

#endif
