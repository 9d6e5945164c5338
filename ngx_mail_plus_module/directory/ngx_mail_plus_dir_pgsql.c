
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_pgsql.h"


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
 * connection, or waits in a queue (of at most 1000, for at most
 * "timeout": one timer, on the oldest) for one.  libpq owns each socket:
 * an nginx connection only watches it, and is freed without closing it;
 * while a connection is being made, libpq may replace its socket at any
 * step, so the socket is watched anew after each.
 *
 * This file: the source's operations, the per-worker pool of
 * connections, and the lookups that wait for one.
 */


#if (NGX_MAIL_PLUS_PGSQL)

#define NGX_MAIL_PLUS_PGSQL_WAITING    1000


static ngx_int_t ngx_mail_plus_dir_pgsql_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static void ngx_mail_plus_dir_pgsql_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static ngx_int_t ngx_mail_plus_dir_pgsql_lookup(ngx_mail_plus_dir_req_t *req);
static ngx_uint_t ngx_mail_plus_dir_pgsql_alive(
    ngx_mail_plus_dir_pgsql_t *pgsql, ngx_uint_t state);
static void ngx_mail_plus_dir_pgsql_deadline(ngx_mail_plus_dir_pgsql_t *pgsql);
static void ngx_mail_plus_dir_pgsql_expire(ngx_event_t *ev);
static void ngx_mail_plus_dir_pgsql_fail(ngx_queue_t *failed,
    ngx_str_t *error);

#endif


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


#if (NGX_MAIL_PLUS_PGSQL)


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

    pgsql->deadline.handler = ngx_mail_plus_dir_pgsql_expire;
    pgsql->deadline.data = pgsql;
    pgsql->deadline.log = cycle->log;

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

    if (pgsql->deadline.timer_set) {
        ngx_del_timer(&pgsql->deadline);
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
    ngx_str_t                       err;
    ngx_mail_plus_dir_pgsql_t      *pgsql;
    ngx_mail_plus_dir_pgsql_req_t  *lr;

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

    lr = ngx_palloc(req->pool, sizeof(ngx_mail_plus_dir_pgsql_req_t));
    if (lr == NULL) {
        ngx_str_set(&err, "out of memory");
        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL, &err);
        return NGX_OK;
    }

    lr->pc = NULL;
    lr->queued = ngx_current_msec;
    req->ctx = lr;

    ngx_queue_insert_tail(&pgsql->waiting, &req->queue);
    pgsql->nwaiting++;

    ngx_mail_plus_dir_pgsql_dispatch(pgsql);

    if (lr->pc == NULL
        && ngx_mail_plus_dir_pgsql_alive(pgsql, NGX_MAIL_PLUS_PGSQL_CLOSED)
           == 0)
    {
        /* it is the only one waiting: a connection lives while any does */

        ngx_queue_remove(&req->queue);
        pgsql->nwaiting--;

        ngx_mail_plus_dir_pgsql_deadline(pgsql);

        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                       &pgsql->error);
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: pgsql \"%V\" lookup %p %s", &req->dir->name, req,
                   lr->pc ? "sent" : "waits for a connection");

    return NGX_AGAIN;
}


/*
 * the lookups that wait go to idle connections; for those left, closed
 * connections start connecting, one for each lookup beyond those already
 * connecting, each tried once here
 */

void
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

    ngx_mail_plus_dir_pgsql_deadline(pgsql);
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

void
ngx_mail_plus_dir_pgsql_fail_waiting(ngx_mail_plus_dir_pgsql_t *pgsql)
{
    ngx_queue_t  waiting;

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

    ngx_mail_plus_dir_pgsql_deadline(pgsql);
    ngx_mail_plus_dir_pgsql_fail(&waiting, &pgsql->error);
}


/* the queue's timer: when the oldest lookup that waits has waited enough */

static void
ngx_mail_plus_dir_pgsql_deadline(ngx_mail_plus_dir_pgsql_t *pgsql)
{
    ngx_msec_t                      waited;
    ngx_mail_plus_dir_req_t        *req;
    ngx_mail_plus_dir_pgsql_req_t  *lr;

    if (pgsql->nwaiting == 0) {

        if (pgsql->deadline.timer_set) {
            ngx_del_timer(&pgsql->deadline);
        }

        return;
    }

    req = ngx_queue_data(ngx_queue_head(&pgsql->waiting),
                         ngx_mail_plus_dir_req_t, queue);
    lr = req->ctx;

    waited = ngx_current_msec - lr->queued;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\": queue timer for lookup %p, "
                   "waiting for %M ms", &pgsql->dir->name, req, waited);

    ngx_add_timer(&pgsql->deadline, waited < pgsql->dir->timeout
                                    ? pgsql->dir->timeout - waited : 1);
}


/*
 * the queue's timer fired: the lookups that have waited "timeout" fail,
 * the others wait on
 */

static void
ngx_mail_plus_dir_pgsql_expire(ngx_event_t *ev)
{
    ngx_str_t                       err;
    ngx_queue_t                     expired, *q;
    ngx_mail_plus_dir_req_t        *req;
    ngx_mail_plus_dir_pgsql_t      *pgsql;
    ngx_mail_plus_dir_pgsql_req_t  *lr;

    pgsql = ev->data;

    ngx_queue_init(&expired);

    while (pgsql->nwaiting) {
        q = ngx_queue_head(&pgsql->waiting);
        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);
        lr = req->ctx;

        if (ngx_current_msec - lr->queued < pgsql->dir->timeout) {
            break;
        }

        ngx_queue_remove(q);
        pgsql->nwaiting--;

        ngx_queue_insert_tail(&expired, q);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "router: pgsql \"%V\": queue timer fired, %ui lookups "
                   "wait on", &pgsql->dir->name, pgsql->nwaiting);

    ngx_mail_plus_dir_pgsql_deadline(pgsql);

    ngx_str_set(&err, "no connection free within the timeout");
    ngx_mail_plus_dir_pgsql_fail(&expired, &err);
}


/*
 * lookups taken from the queue fail; their handlers may ask again, and
 * find them gone from it
 */

static void
ngx_mail_plus_dir_pgsql_fail(ngx_queue_t *failed, ngx_str_t *error)
{
    ngx_queue_t              *q;
    ngx_mail_plus_dir_req_t  *req;

    while (!ngx_queue_empty(failed)) {
        q = ngx_queue_head(failed);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: pgsql \"%V\" lookup %p failed waiting",
                       &req->dir->name, req);

        ngx_mail_plus_dir_pgsql_answer(req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                       error);
        ngx_mail_plus_dir_done(req);
    }
}


/*
 * the lookup answered (or failed: a broken connection is closed), the
 * connection takes the next, and the directory is told last: its caller
 * may ask again at once
 */

void
ngx_mail_plus_dir_pgsql_finish(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_req_t    *req;
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = pc->pgsql;
    req = pc->req;

    pc->req = NULL;

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

#endif
