
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_ldap.h"


/*
 * The LDAP source ("router_directory ldap"), through OpenLDAP's libldap
 * and its asynchronous calls.  Each worker keeps up to "connections"
 * connections to the server, each with one request at a time (no
 * multiplexing by message ID: a connection's bind identity changes with
 * "password bind", and one request per connection keeps a timeout's
 * cleanup to closing that connection); requests wait in a bounded queue
 * when all are busy.
 *
 * A connection is opened by libldap without waiting (LDAP_OPT_CONNECT_ASYNC:
 * the first operation answers LDAP_X_CONNECTING and is repeated when the
 * socket is writable); its socket, libldap's, is watched through an nginx
 * connection that is freed without closing it, ldap_unbind_ext() closes
 * it.  Replies are read with ldap_result() and a zero timeout when the
 * socket is readable.  The steps of a request: a bind as "bind_dn" (when
 * the connection is not bound so), the search, and with "password bind"
 * a bind as the entry found with the user's password; each has a timer.
 */


#if (NGX_MAIL_PLUS_LDAP)


#define NGX_MAIL_PLUS_LDAP_WAITING   1000


static ngx_int_t ngx_mail_plus_dir_ldap_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static void ngx_mail_plus_dir_ldap_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static ngx_int_t ngx_mail_plus_dir_ldap_lookup(ngx_mail_plus_dir_req_t *req);
static ngx_mail_plus_dir_ldap_conn_t *ngx_mail_plus_dir_ldap_free_conn(
    ngx_mail_plus_dir_ldap_ctx_t *ctx);
static void ngx_mail_plus_dir_ldap_next(ngx_event_t *ev);
static ngx_int_t ngx_mail_plus_dir_ldap_start(
    ngx_mail_plus_dir_ldap_conn_t *lc, ngx_mail_plus_dir_req_t *req);
static ngx_int_t ngx_mail_plus_dir_ldap_open(
    ngx_mail_plus_dir_ldap_conn_t *lc);
static ngx_int_t ngx_mail_plus_dir_ldap_watch(
    ngx_mail_plus_dir_ldap_conn_t *lc);
static void ngx_mail_plus_dir_ldap_write_handler(ngx_event_t *wev);
static void ngx_mail_plus_dir_ldap_read_handler(ngx_event_t *rev);
static void ngx_mail_plus_dir_ldap_retry(ngx_mail_plus_dir_ldap_conn_t *lc);
static void ngx_mail_plus_dir_ldap_finish(ngx_mail_plus_dir_ldap_conn_t *lc);
static void ngx_mail_plus_dir_ldap_close(ngx_mail_plus_dir_ldap_conn_t *lc);

#endif


ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_ldap_ops = {
    ngx_string("ldap"),
    ngx_mail_plus_dir_ldap_conf,
#if (NGX_MAIL_PLUS_LDAP)
    ngx_mail_plus_dir_ldap_init_process,
    ngx_mail_plus_dir_ldap_exit_process,
    ngx_mail_plus_dir_ldap_lookup
#else
    NULL,
    NULL,
    NULL
#endif
};


#if (NGX_MAIL_PLUS_LDAP)


static ngx_int_t
ngx_mail_plus_dir_ldap_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir)
{
    ngx_uint_t                     i;
    ngx_mail_plus_dir_ldap_ctx_t  *ctx;

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_mail_plus_dir_ldap_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->conns = ngx_pcalloc(cycle->pool, dir->connections
                                      * sizeof(ngx_mail_plus_dir_ldap_conn_t));
    if (ctx->conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < dir->connections; i++) {
        ctx->conns[i].ctx = ctx;
        ctx->conns[i].index = i;
    }

    ctx->dir = dir;
    ctx->conf = dir->conf;
    ctx->log = cycle->log;

    ngx_queue_init(&ctx->waiting);

    ctx->next.handler = ngx_mail_plus_dir_ldap_next;
    ctx->next.data = ctx;
    ctx->next.log = cycle->log;

    dir->data = ctx;

    return NGX_OK;
}


static void
ngx_mail_plus_dir_ldap_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir)
{
    ngx_uint_t                     i;
    ngx_mail_plus_dir_ldap_ctx_t  *ctx;

    ctx = dir->data;

    if (ctx == NULL) {
        return;
    }

    for (i = 0; i < dir->connections; i++) {
        ngx_mail_plus_dir_ldap_close(&ctx->conns[i]);
    }
}


static ngx_int_t
ngx_mail_plus_dir_ldap_lookup(ngx_mail_plus_dir_req_t *req)
{
    size_t                          len;
    u_char                         *p;
    ngx_str_t                      *tpl;
    ngx_mail_plus_dir_ldap_req_t   *lr;
    ngx_mail_plus_dir_ldap_ctx_t   *ctx;
    ngx_mail_plus_dir_ldap_conn_t  *lc;

    ctx = req->dir->data;

    if (req->type == NGX_MAIL_PLUS_DIR_USERDB) {
        tpl = &ctx->conf->recipient_filter;

        if (tpl->len == 0) {
            req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
            return NGX_OK;
        }

    } else {
        tpl = &ctx->conf->filter;

        if (ctx->conf->password == NULL && req->password.len == 0) {

            /* an empty password would be an unauthenticated bind */

            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                           "router: ldap: an empty password is refused");

            req->result = NGX_MAIL_PLUS_DIR_REFUSED;
            return NGX_OK;
        }
    }

    lr = ngx_pcalloc(req->pool, sizeof(ngx_mail_plus_dir_ldap_req_t));
    if (lr == NULL) {
        return NGX_ERROR;
    }

    len = ngx_mail_plus_dir_ldap_filter_len(tpl, &req->login);

    lr->filter = ngx_pnalloc(req->pool, len + 1);
    if (lr->filter == NULL) {
        return NGX_ERROR;
    }

    p = ngx_mail_plus_dir_ldap_filter((u_char *) lr->filter, tpl,
                                      &req->login);
    *p = '\0';

    lr->queued = ngx_current_msec;
    req->ctx = lr;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: ldap: filter \"%s\"", lr->filter);

    lc = ngx_mail_plus_dir_ldap_free_conn(ctx);

    if (lc == NULL) {

        if (ctx->nwaiting >= NGX_MAIL_PLUS_LDAP_WAITING) {
            ngx_str_set(&req->error, "too many lookups waiting");
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
            return NGX_OK;
        }

        ngx_queue_insert_tail(&ctx->waiting, &req->queue);
        ctx->nwaiting++;

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: ldap: every connection is busy, %ui waiting",
                       ctx->nwaiting);

        return NGX_AGAIN;
    }

    if (ngx_mail_plus_dir_ldap_start(lc, req) != NGX_OK) {
        /* req->result and req->error are set */
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* a connection without a request: an open one first */

static ngx_mail_plus_dir_ldap_conn_t *
ngx_mail_plus_dir_ldap_free_conn(ngx_mail_plus_dir_ldap_ctx_t *ctx)
{
    ngx_uint_t                      i;
    ngx_mail_plus_dir_ldap_conn_t  *lc, *closed;

    closed = NULL;

    for (i = 0; i < ctx->dir->connections; i++) {
        lc = &ctx->conns[i];

        if (lc->req) {
            continue;
        }

        if (lc->ld) {
            return lc;
        }

        if (closed == NULL) {
            closed = lc;
        }
    }

    return closed;
}


/* the waiting requests, on the connections that have become free */

static void
ngx_mail_plus_dir_ldap_next(ngx_event_t *ev)
{
    ngx_queue_t                    *q;
    ngx_mail_plus_dir_req_t        *req;
    ngx_mail_plus_dir_ldap_req_t   *lr;
    ngx_mail_plus_dir_ldap_ctx_t   *ctx;
    ngx_mail_plus_dir_ldap_conn_t  *lc;

    ctx = ev->data;

    while (!ngx_queue_empty(&ctx->waiting)) {

        lc = ngx_mail_plus_dir_ldap_free_conn(ctx);
        if (lc == NULL) {
            return;
        }

        q = ngx_queue_head(&ctx->waiting);
        ngx_queue_remove(q);
        ctx->nwaiting--;

        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);
        lr = req->ctx;

        if (ngx_current_msec - lr->queued >= ctx->dir->timeout) {
            ngx_str_set(&req->error, "waited too long for a connection");
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
            ngx_mail_plus_dir_done(req);
            continue;
        }

        if (ngx_mail_plus_dir_ldap_start(lc, req) != NGX_OK) {
            ngx_mail_plus_dir_done(req);
        }
    }
}


/*
 * a request on a connection: NGX_OK, it goes on in the event loop;
 * NGX_ERROR, it is answered (TEMPFAIL) and the connection closed
 */

static ngx_int_t
ngx_mail_plus_dir_ldap_start(ngx_mail_plus_dir_ldap_conn_t *lc,
    ngx_mail_plus_dir_req_t *req)
{
    lc->req = req;
    lc->answered = 0;
    lc->reused = lc->ld ? 1 : 0;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: ldap \"%V\": request %p on connection %ui (%s)",
                   &lc->ctx->dir->name, req, lc->index,
                   lc->ld ? "reused" : "new");

    if (lc->ld == NULL && ngx_mail_plus_dir_ldap_open(lc) != NGX_OK) {
        ngx_mail_plus_dir_ldap_close(lc);
        lc->req = NULL;
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        ngx_str_set(&req->error, "cannot set up a connection");
        return NGX_ERROR;
    }

    if (ngx_mail_plus_dir_ldap_send(lc, lc->bound ? NGX_MAIL_PLUS_LDAP_SEARCH
                                                  : NGX_MAIL_PLUS_LDAP_BIND)
        != NGX_OK)
    {
        lc->req = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a new LDAP handle; libldap connects at its first operation */

static ngx_int_t
ngx_mail_plus_dir_ldap_open(ngx_mail_plus_dir_ldap_conn_t *lc)
{
    int                            rc, version;
    struct timeval                 tv;
    ngx_mail_plus_dir_ldap_ctx_t  *ctx;

    ctx = lc->ctx;

    rc = ldap_initialize(&lc->ld, ctx->conf->url);

    if (rc != LDAP_SUCCESS) {
        lc->ld = NULL;
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "ldap_initialize(\"%s\") failed: %s",
                      ctx->conf->url, ldap_err2string(rc));
        return NGX_ERROR;
    }

    version = LDAP_VERSION3;

    /* the network timeout makes libldap connect without waiting */

    tv.tv_sec = ctx->dir->timeout / 1000 + 1;
    tv.tv_usec = 0;

    if (ldap_set_option(lc->ld, LDAP_OPT_PROTOCOL_VERSION, &version)
        != LDAP_OPT_SUCCESS
        || ldap_set_option(lc->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF)
           != LDAP_OPT_SUCCESS
        || ldap_set_option(lc->ld, LDAP_OPT_RESTART, LDAP_OPT_OFF)
           != LDAP_OPT_SUCCESS
        || ldap_set_option(lc->ld, LDAP_OPT_CONNECT_ASYNC, LDAP_OPT_ON)
           != LDAP_OPT_SUCCESS
        || ldap_set_option(lc->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv)
           != LDAP_OPT_SUCCESS)
    {
        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "ldap_set_option() failed");
        return NGX_ERROR;
    }

    /* a new connection is anonymous */

    lc->bound = ctx->conf->bind_dn ? 0 : 1;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->log, 0,
                   "router: ldap \"%V\": connection %ui to %s opened",
                   &ctx->dir->name, lc->index, ctx->conf->url);

    return NGX_OK;
}


/*
 * a step sent: NGX_OK, its reply (or the end of the connect) is waited
 * for; NGX_ERROR, the request is answered and the connection closed
 */

ngx_int_t
ngx_mail_plus_dir_ldap_send(ngx_mail_plus_dir_ldap_conn_t *lc,
    ngx_uint_t step)
{
    int                             rc;
    char                           *dn, **attrs;
    struct berval                   cred;
    ngx_mail_plus_dir_req_t        *req;
    ngx_mail_plus_dir_ldap_req_t   *lr;
    ngx_mail_plus_dir_ldap_conf_t  *lcf;

    req = lc->req;
    lr = req->ctx;
    lcf = lc->ctx->conf;

    lc->step = step;

    switch (step) {

    case NGX_MAIL_PLUS_LDAP_BIND:
        dn = lcf->bind_dn ? lcf->bind_dn : "";
        cred = lcf->bind_pw;

        rc = ldap_sasl_bind(lc->ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL,
                            &lc->msgid);
        break;

    case NGX_MAIL_PLUS_LDAP_SEARCH:
        attrs = (req->type == NGX_MAIL_PLUS_DIR_PASSDB) ? lcf->attrs
                                                         : lcf->rcpt_attrs;

        /* two entries at most: more than one is an error */

        rc = ldap_search_ext(lc->ld, lcf->base, lcf->scope, lr->filter,
                             attrs, 0, NULL, NULL, NULL, 2, &lc->msgid);
        break;

    default: /* NGX_MAIL_PLUS_LDAP_USER */
        cred.bv_val = (char *) req->password.data;
        cred.bv_len = req->password.len;

        /* whatever the answer, the connection is no longer bound as ours */

        lc->bound = 0;

        rc = ldap_sasl_bind(lc->ld, lr->dn, LDAP_SASL_SIMPLE, &cred, NULL,
                            NULL, &lc->msgid);
        break;
    }

    if (rc == LDAP_X_CONNECTING) {
        lc->connecting = 1;

    } else if (rc != LDAP_SUCCESS) {
        return (ngx_mail_plus_dir_ldap_fail(lc, "cannot send a request", rc)
                == NGX_AGAIN) ? NGX_OK : NGX_ERROR;

    } else {
        lc->connecting = 0;
    }

    if (ngx_mail_plus_dir_ldap_watch(lc) != NGX_OK) {
        (void) ngx_mail_plus_dir_ldap_fail(lc, "cannot watch the connection",
                                           LDAP_LOCAL_ERROR);
        return NGX_ERROR;
    }

    ngx_add_timer(lc->c->read, lc->ctx->dir->timeout);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: ldap: connection %ui: step %ui %s",
                   lc->index, step, lc->connecting ? "waits for the connect"
                                                   : "sent");

    return NGX_OK;
}


/*
 * libldap's socket in nginx's events; read events level-triggered, as
 * libldap may leave a reply in the socket when it returns
 */

static ngx_int_t
ngx_mail_plus_dir_ldap_watch(ngx_mail_plus_dir_ldap_conn_t *lc)
{
    int                fd;
    ngx_connection_t  *c;

    c = lc->c;

    if (c == NULL) {
        if (ldap_get_option(lc->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS
            || fd < 0)
        {
            return NGX_ERROR;
        }

        c = ngx_get_connection(fd, lc->ctx->log);
        if (c == NULL) {
            return NGX_ERROR;
        }

        lc->c = c;

        c->data = lc;
        c->read->handler = ngx_mail_plus_dir_ldap_read_handler;
        c->write->handler = ngx_mail_plus_dir_ldap_write_handler;
        c->read->log = c->log;
        c->write->log = c->log;

        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_nonblocking(c->fd) == -1) {
        return NGX_ERROR;
    }

    if (lc->connecting && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!lc->connecting && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_mail_plus_dir_ldap_write_handler(ngx_event_t *wev)
{
    ngx_connection_t               *c;
    ngx_mail_plus_dir_ldap_conn_t  *lc;

    c = wev->data;
    lc = c->data;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, wev->log, 0,
                   "router: ldap \"%V\": connection %ui writable",
                   &lc->ctx->dir->name, lc->index);

    if (lc->connecting) {
        ngx_mail_plus_dir_ldap_retry(lc);
        return;
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* the connect went on: the step is sent again */

static void
ngx_mail_plus_dir_ldap_retry(ngx_mail_plus_dir_ldap_conn_t *lc)
{
    if (lc->c->read->timer_set) {
        ngx_del_timer(lc->c->read);
    }

    if (ngx_mail_plus_dir_ldap_send(lc, lc->step) != NGX_OK) {
        ngx_mail_plus_dir_ldap_finish(lc);
    }
}


static void
ngx_mail_plus_dir_ldap_read_handler(ngx_event_t *rev)
{
    int                             rc;
    Sockbuf                        *sb;
    ngx_uint_t                      n;
    LDAPMessage                    *res;
    struct timeval                  zero;
    ngx_connection_t               *c;
    ngx_mail_plus_dir_ldap_conn_t  *lc;

    c = rev->data;
    lc = c->data;

    if (rev->timedout) {
        rev->timedout = 0;
        (void) ngx_mail_plus_dir_ldap_fail(lc,
                                           lc->connecting ? "connect timed out"
                                                          : "timed out",
                                           LDAP_TIMEOUT);
        ngx_mail_plus_dir_ldap_finish(lc);
        return;
    }

    if (lc->req == NULL) {
        /* the server closed an idle connection, or said why it will */
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, rev->log, 0,
                       "router: ldap \"%V\": idle connection %ui closed "
                       "by the server", &lc->ctx->dir->name, lc->index);
        ngx_mail_plus_dir_ldap_close(lc);
        return;
    }

    if (lc->connecting) {
        ngx_mail_plus_dir_ldap_retry(lc);
        return;
    }

    zero.tv_sec = 0;
    zero.tv_usec = 0;

    for (n = 0; n < 64; n++) {
        res = NULL;

        rc = ldap_result(lc->ld, lc->msgid, LDAP_MSG_ALL, &zero, &res);

        if (rc > 0) {
            if (rev->timer_set) {
                ngx_del_timer(rev);
            }

            lc->answered = 1;

            rc = ngx_mail_plus_dir_ldap_result(lc, res);
            ldap_msgfree(res);

            if (rc != NGX_AGAIN) {
                ngx_mail_plus_dir_ldap_finish(lc);
            }

            return;
        }

        if (rc < 0) {
            if (ldap_get_option(lc->ld, LDAP_OPT_RESULT_CODE, &rc)
                != LDAP_OPT_SUCCESS)
            {
                rc = LDAP_SERVER_DOWN;
            }

            if (ngx_mail_plus_dir_ldap_fail(lc, "cannot read a reply", rc)
                == NGX_OK)
            {
                ngx_mail_plus_dir_ldap_finish(lc);
            }

            return;
        }

        /* a part of the reply: more may be in libldap's buffer */

        if (ldap_get_option(lc->ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS
            || !ber_sockbuf_ctrl(sb, LBER_SB_OPT_DATA_READY, NULL))
        {
            return;
        }
    }
}


/*
 * the server could not answer: the connection is closed and the request
 * answered TEMPFAIL (NGX_OK; lc->req is still the request); a reused
 * connection that failed before any answer (the server closed it
 * meanwhile) gets one more try on a new one (NGX_AGAIN, it goes on)
 */

ngx_int_t
ngx_mail_plus_dir_ldap_fail(ngx_mail_plus_dir_ldap_conn_t *lc, char *what,
    int code)
{
    u_char                        *p;
    ngx_str_t                      reason;
    ngx_mail_plus_dir_req_t       *req;
    ngx_mail_plus_dir_ldap_req_t  *lr;

    req = lc->req;
    lr = req->ctx;

    ngx_mail_plus_dir_ldap_close(lc);

    if (lc->reused && !lc->answered && !lr->retried && code != LDAP_TIMEOUT) {

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: ldap: connection %ui was gone, "
                       "a new one is tried", lc->index);

        lr->retried = 1;

        if (ngx_mail_plus_dir_ldap_start(lc, req) == NGX_OK) {
            return NGX_AGAIN;
        }

        lc->req = req;
        return NGX_OK;
    }

    req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;

    p = ngx_pnalloc(req->pool, 128);

    if (p == NULL) {
        ngx_str_set(&req->error, "no memory");
        return NGX_OK;
    }

    reason.data = p;
    reason.len = ngx_snprintf(p, 128, "%s: %s", what, ldap_err2string(code))
                 - p;

    req->error = reason;

    ngx_mail_plus_dir_state(lc->ctx->dir, 0, &reason, req->log);

    return NGX_OK;
}


/* the request's answer is final: it goes, the next waiting one comes */

static void
ngx_mail_plus_dir_ldap_finish(ngx_mail_plus_dir_ldap_conn_t *lc)
{
    ngx_mail_plus_dir_req_t       *req;
    ngx_mail_plus_dir_ldap_ctx_t  *ctx;

    req = lc->req;
    ctx = lc->ctx;

    lc->req = NULL;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: ldap: request %p answered %ui on connection %ui",
                   req, req->result, lc->index);

    if (!ngx_queue_empty(&ctx->waiting) && !ctx->next.posted) {
        ngx_post_event(&ctx->next, &ngx_posted_events);
    }

    ngx_mail_plus_dir_done(req);
}


/*
 * the nginx connection freed without closing libldap's socket, then the
 * handle unbound (which closes it)
 */

static void
ngx_mail_plus_dir_ldap_close(ngx_mail_plus_dir_ldap_conn_t *lc)
{
    ngx_connection_t  *c;

    c = lc->c;

    if (c) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
        }

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
        }

        c->fd = (ngx_socket_t) -1;
        ngx_free_connection(c);

        lc->c = NULL;
    }

    if (lc->ld) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, lc->ctx->log, 0,
                       "router: ldap \"%V\": connection %ui closed",
                       &lc->ctx->dir->name, lc->index);

        (void) ldap_unbind_ext(lc->ld, NULL, NULL);
        lc->ld = NULL;
    }

    lc->connecting = 0;
    lc->bound = 0;
}

#endif
