
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_dir_dovecot.h"


/*
 * The "dovecot" directory: its configuration, and its requests: a login
 * is an AUTH with PLAIN on the auth-client socket (a token, with
 * OAUTHBEARER or XOAUTH2), a recipient a USER on the auth-userdb socket
 * (ngx_mail_plus_dir_dovecot_reply.c reads the answers).  Requests wait
 * for a connection in a bounded queue, are sent to the least busy one,
 * and their answers are told from a posted event, never from inside a
 * lookup.
 */


static char *ngx_mail_plus_dir_dovecot_conf(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir);
static char *ngx_mail_plus_dovecot_url(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, char *name, ngx_url_t *u);
static ngx_int_t ngx_mail_plus_dir_dovecot_init(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static ngx_int_t ngx_mail_plus_dovecot_pool_init(ngx_cycle_t *cycle,
    ngx_mail_plus_dovecot_pool_t *pool, ngx_mail_plus_dir_t *dir,
    ngx_url_t *url);
static void ngx_mail_plus_dir_dovecot_exit(ngx_cycle_t *cycle,
    ngx_mail_plus_dir_t *dir);
static ngx_int_t ngx_mail_plus_dir_dovecot_lookup(ngx_mail_plus_dir_req_t *req);
static ngx_mail_plus_dovecot_conn_t *ngx_mail_plus_dovecot_pick(
    ngx_mail_plus_dovecot_pool_t *pool, ngx_uint_t any);
static ngx_int_t ngx_mail_plus_dovecot_send(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_mail_plus_dir_req_t *req);
static size_t ngx_mail_plus_dovecot_request(ngx_mail_plus_dovecot_pool_t *pool,
    ngx_mail_plus_dir_req_t *req, u_char *p, size_t size);
static void ngx_mail_plus_dovecot_done(ngx_event_t *ev);


ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_dovecot_ops = {
    ngx_string("dovecot"),
    ngx_mail_plus_dir_dovecot_conf,
    ngx_mail_plus_dir_dovecot_init,
    ngx_mail_plus_dir_dovecot_exit,
    ngx_mail_plus_dir_dovecot_lookup
};


static char *
ngx_mail_plus_dir_dovecot_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    u_char                        *p;
    ngx_str_t                     *value;
    ngx_mail_plus_dir_param_t     *param;
    ngx_mail_plus_dovecot_conf_t  *dcf;

    dcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_dovecot_conf_t));
    if (dcf == NULL) {
        return NGX_CONF_ERROR;
    }

    dir->conf = dcf;

    if (ngx_mail_plus_dovecot_url(cf, dir, "auth", &dcf->auth)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (dcf->auth.url.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "directory \"%V\" in %s:%ui needs \"auth\", the "
                      "auth-client socket of Dovecot",
                      &dir->name, dir->file, dir->line);
        return NGX_CONF_ERROR;
    }

    if (ngx_mail_plus_dovecot_url(cf, dir, "master", &dcf->master)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    dir->userdb = dcf->master.url.len ? 1 : 0;

    param = ngx_mail_plus_dir_param(dir, "service");

    if (param) {
        value = param->args->elts;

        for (p = value[0].data; p < value[0].data + value[0].len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
                  || *p == '-' || *p == '_'))
            {
                break;
            }
        }

        if (param->args->nelts != 1 || value[0].len == 0
            || value[0].len > 32 || p != value[0].data + value[0].len)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "invalid \"service\" of directory \"%V\" "
                          "in %s:%ui", &dir->name, param->file, param->line);
            return NGX_CONF_ERROR;
        }

        dcf->service = value[0];
    }

    return NGX_CONF_OK;
}


/*
 * "auth" or "master": unix:PATH (a path that does not exist only warns)
 * or HOST:PORT
 */

static char *
ngx_mail_plus_dovecot_url(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    char *name, ngx_url_t *u)
{
    ngx_str_t                  *value;
    ngx_file_info_t             fi;
    ngx_mail_plus_dir_param_t  *param;

    param = ngx_mail_plus_dir_param(dir, name);

    if (param == NULL) {
        return NGX_CONF_OK;
    }

    value = param->args->elts;

    u->url = value[0];
    u->no_resolve = 0;

    if (param->args->nelts != 1
        || ngx_parse_url(cf->pool, u) != NGX_OK
        || u->naddrs == 0
        || (u->family != AF_UNIX && u->no_port))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"%s\" of directory \"%V\" in %s:%ui%s%s, "
                      "it must be unix:PATH or HOST:PORT", name, &dir->name,
                      param->file, param->line, u->err ? ": " : "",
                      u->err ? u->err : "");
        return NGX_CONF_ERROR;
    }

#if (NGX_HAVE_UNIX_DOMAIN)

    if (u->family == AF_UNIX
        && ngx_file_info(((struct sockaddr_un *) u->addrs[0].sockaddr)
                         ->sun_path, &fi)
           == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, cf->log, ngx_errno,
                      "\"%s\" of directory \"%V\" in %s:%ui: %V does not "
                      "exist yet", name, &dir->name, param->file,
                      param->line, &u->url);
    }

#endif

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_mail_plus_dir_dovecot_init(ngx_cycle_t *cycle, ngx_mail_plus_dir_t *dir)
{
    ngx_mail_plus_dovecot_t       *dv;
    ngx_mail_plus_dovecot_conf_t  *dcf;

    dcf = dir->conf;

    dv = ngx_pcalloc(cycle->pool, sizeof(ngx_mail_plus_dovecot_t));
    if (dv == NULL) {
        return NGX_ERROR;
    }

    dir->data = dv;

    if (ngx_mail_plus_dovecot_pool_init(cycle, &dv->auth, dir, &dcf->auth)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (dcf->master.url.len) {
        if (ngx_mail_plus_dovecot_pool_init(cycle, &dv->master, dir,
                                            &dcf->master)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        dv->master.master = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_dovecot_pool_init(ngx_cycle_t *cycle,
    ngx_mail_plus_dovecot_pool_t *pool, ngx_mail_plus_dir_t *dir,
    ngx_url_t *url)
{
    ngx_uint_t  i;

    pool->dir = dir;
    pool->url = url;
    pool->log = cycle->log;

    pool->conns = ngx_pcalloc(cycle->pool, dir->connections
                                       * sizeof(ngx_mail_plus_dovecot_conn_t));
    if (pool->conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < dir->connections; i++) {
        pool->conns[i].pool = pool;
        pool->conns[i].slot = i;
        ngx_queue_init(&pool->conns[i].requests);
    }

    ngx_queue_init(&pool->waiting);
    ngx_queue_init(&pool->done);

    pool->done_event.handler = ngx_mail_plus_dovecot_done;
    pool->done_event.data = pool;
    pool->done_event.log = cycle->log;

    return NGX_OK;
}


static void
ngx_mail_plus_dir_dovecot_exit(ngx_cycle_t *cycle, ngx_mail_plus_dir_t *dir)
{
    ngx_uint_t                     i, j;
    ngx_mail_plus_dovecot_t       *dv;
    ngx_mail_plus_dovecot_pool_t  *pools[2];

    dv = dir->data;

    if (dv == NULL) {
        return;
    }

    pools[0] = &dv->auth;
    pools[1] = &dv->master;

    for (i = 0; i < 2; i++) {
        if (pools[i]->conns == NULL) {
            continue;
        }

        if (pools[i]->done_event.posted) {
            ngx_delete_posted_event(&pools[i]->done_event);
        }

        for (j = 0; j < dir->connections; j++) {
            if (pools[i]->conns[j].peer.connection) {
                ngx_close_connection(pools[i]->conns[j].peer.connection);
                pools[i]->conns[j].peer.connection = NULL;
            }
        }
    }
}


/* a request waits for a connection; the answer comes from the event loop */

static ngx_int_t
ngx_mail_plus_dir_dovecot_lookup(ngx_mail_plus_dir_req_t *req)
{
    ngx_mail_plus_dovecot_t       *dv;
    ngx_mail_plus_dovecot_pool_t  *pool;

    dv = req->dir->data;

    pool = (req->type == NGX_MAIL_PLUS_DIR_USERDB) ? &dv->master : &dv->auth;

    if (pool->conns == NULL) {
        req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
        return NGX_OK;
    }

    if (ngx_mail_plus_text_has_ctl(&req->login)) {
        req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
        return NGX_OK;
    }

    if (pool->nwaiting >= NGX_MAIL_PLUS_DOVECOT_QUEUE) {
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        ngx_str_set(&req->error, "too many requests waiting");
        return NGX_OK;
    }

    req->ctx = ngx_pcalloc(req->pool, sizeof(ngx_mail_plus_dovecot_req_t));
    if (req->ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&pool->waiting, &req->queue);
    pool->nwaiting++;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "directory dovecot: request %p queued, %ui waiting",
                   req, pool->nwaiting);

    ngx_mail_plus_dovecot_dispatch(pool);

    return NGX_AGAIN;
}


/*
 * the requests waiting go to the connections ready: to idle ones first;
 * when none is idle, a connection more is opened if none is being opened,
 * and the requests go to the least busy meanwhile
 */

void
ngx_mail_plus_dovecot_dispatch(ngx_mail_plus_dovecot_pool_t *pool)
{
    ngx_uint_t                     i, any, opening;
    ngx_queue_t                   *q;
    ngx_mail_plus_dir_req_t       *req;
    ngx_mail_plus_dovecot_conn_t  *conn, *closed;

    for (any = 0; /* void */; any = 1) {

        while (!ngx_queue_empty(&pool->waiting)) {

            conn = ngx_mail_plus_dovecot_pick(pool, any);

            if (conn == NULL) {
                break;
            }

            q = ngx_queue_head(&pool->waiting);
            req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);

            if (ngx_mail_plus_dovecot_send(conn, req) == NGX_AGAIN) {
                break;
            }
        }

        if (ngx_queue_empty(&pool->waiting) || any) {
            break;
        }

        opening = 0;
        closed = NULL;

        for (i = 0; i < pool->dir->connections; i++) {
            conn = &pool->conns[i];

            if (conn->state == NGX_MAIL_PLUS_DOVECOT_CLOSED) {
                if (closed == NULL) {
                    closed = conn;
                }

            } else if (conn->state != NGX_MAIL_PLUS_DOVECOT_READY) {
                opening = 1;
            }
        }

        if (!opening && closed) {
            (void) ngx_mail_plus_dovecot_connect(closed);
        }
    }

    if (!ngx_queue_empty(&pool->waiting)) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, pool->log, 0,
                       "directory dovecot: %ui requests wait for "
                       "a connection", pool->nwaiting);
    }
}


/* a connection ready to take a request: an idle one, or any the least busy */

static ngx_mail_plus_dovecot_conn_t *
ngx_mail_plus_dovecot_pick(ngx_mail_plus_dovecot_pool_t *pool, ngx_uint_t any)
{
    ngx_uint_t                     i;
    ngx_mail_plus_dovecot_conn_t  *conn, *best;

    best = NULL;

    for (i = 0; i < pool->dir->connections; i++) {
        conn = &pool->conns[i];

        if (conn->state != NGX_MAIL_PLUS_DOVECOT_READY
            || conn->nrequests >= NGX_MAIL_PLUS_DOVECOT_INFLIGHT)
        {
            continue;
        }

        if (conn->nrequests == 0) {
            return conn;
        }

        if (best == NULL || conn->nrequests < best->nrequests) {
            best = conn;
        }
    }

    return any ? best : NULL;
}


/*
 * a request to a connection: NGX_OK (sent or in its output), NGX_AGAIN
 * (its output is full: it waits), NGX_ERROR (the connection closed)
 */

static ngx_int_t
ngx_mail_plus_dovecot_send(ngx_mail_plus_dovecot_conn_t *conn,
    ngx_mail_plus_dir_req_t *req)
{
    size_t                         len;
    ngx_buf_t                     *b;
    ngx_mail_plus_dovecot_req_t   *dr;
    ngx_mail_plus_dovecot_pool_t  *pool;

    pool = conn->pool;
    b = conn->out;

    if (!pool->master
        && (req->mech == NGX_MAIL_PLUS_SASL_OAUTHBEARER ? !conn->oauthbearer
            : req->mech == NGX_MAIL_PLUS_SASL_XOAUTH2 ? !conn->xoauth2
            : !conn->plain))
    {
        ngx_queue_remove(&req->queue);
        pool->nwaiting--;

        ngx_mail_plus_dovecot_answer(pool, req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                     "Dovecot does not offer the mechanism "
                                     "(auth_mechanisms)");
        return NGX_OK;
    }

    len = ngx_mail_plus_dovecot_request(pool, req, b->last, b->end - b->last);

    if (len == 0) {
        if (b->last != b->start) {
            return NGX_AGAIN;
        }

        /* longer than any line Dovecot takes */

        ngx_queue_remove(&req->queue);
        pool->nwaiting--;

        ngx_mail_plus_dovecot_answer(pool, req,
                                     req->type == NGX_MAIL_PLUS_DIR_PASSDB
                                     ? NGX_MAIL_PLUS_DIR_REFUSED
                                     : NGX_MAIL_PLUS_DIR_UNKNOWN, NULL);
        return NGX_OK;
    }

    b->last += len;

    dr = req->ctx;

    ngx_queue_remove(&req->queue);
    pool->nwaiting--;

    ngx_queue_insert_tail(&conn->requests, &req->queue);
    conn->nrequests++;

    dr->deadline = ngx_current_msec + pool->dir->timeout;

    if (conn->nrequests == 1) {
        ngx_mail_plus_dovecot_timer(conn);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "directory dovecot: request %p sent as %uD on "
                   "connection %ui (%ui in flight)",
                   req, dr->id, conn->slot, conn->nrequests);

    return ngx_mail_plus_dovecot_flush(conn);
}


/*
 * the line of a request into p: its length, 0 if it does not fit.
 * AUTH: "\0login\0password" (or a token login's response) in base64 last,
 * as Dovecot wants it; USER:
 * the login, free of control characters (checked), as it is.
 */

static size_t
ngx_mail_plus_dovecot_request(ngx_mail_plus_dovecot_pool_t *pool,
    ngx_mail_plus_dir_req_t *req, u_char *p, size_t size)
{
    u_char                         c, *start;
    size_t                         len, rip;
    ngx_str_t                      service, plain, resp, mech;
    ngx_uint_t                     i;
    ngx_mail_plus_dovecot_req_t   *dr;
    ngx_mail_plus_dovecot_conf_t  *dcf;

    dcf = pool->dir->conf;
    dr = req->ctx;

    service = dcf->service;

    if (service.len == 0) {
        if (req->protocol == NGX_MAIL_PLUS_IMAP) {
            ngx_str_set(&service, "imap");

        } else if (req->protocol == NGX_MAIL_PLUS_POP3) {
            ngx_str_set(&service, "pop3");

        } else {
            ngx_str_set(&service, "smtp");
        }
    }

    /* the client's address if it is one */

    rip = req->client.len;

    for (i = 0; i < req->client.len; i++) {
        c = req->client.data[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
              || (c >= 'A' && c <= 'F') || c == '.' || c == ':'))
        {
            rip = 0;
            break;
        }
    }

    if (pool->master) {
        len = sizeof("USER\t4294967295\t\tservice=\n") - 1 + req->login.len
              + service.len;

        if (len > size) {
            return 0;
        }

        dr->id = ++pool->id;

        start = p;
        p = ngx_sprintf(p, "USER\t%uD\t%V\tservice=%V\n", dr->id,
                        &req->login, &service);

        return p - start;
    }

    if (req->mech) {
        ngx_str_set(&mech, "OAUTHBEARER");

        if (req->mech == NGX_MAIL_PLUS_SASL_XOAUTH2) {
            ngx_str_set(&mech, "XOAUTH2");
        }

        plain.len = req->response.len;

    } else {
        ngx_str_set(&mech, "PLAIN");
        plain.len = 1 + req->login.len + 1 + req->password.len;
    }

    len = sizeof("AUTH\t4294967295\t\tservice=\tsecured\tno-penalty"
                 "\trip=\tresp=\n") - 1
          + mech.len + service.len + rip + ngx_base64_encoded_length(plain.len);

    if (len > size) {
        return 0;
    }

    if (req->mech) {
        plain.data = req->response.data;

    } else {
        plain.data = ngx_pnalloc(req->pool, plain.len);
        if (plain.data == NULL) {
            return 0;
        }

        plain.data[0] = '\0';
        ngx_memcpy(plain.data + 1, req->login.data, req->login.len);
        plain.data[1 + req->login.len] = '\0';
        ngx_memcpy(plain.data + 2 + req->login.len, req->password.data,
                   req->password.len);
    }

    dr->id = ++pool->id;

    start = p;

    p = ngx_sprintf(p, "AUTH\t%uD\t%V\tservice=%V\tsecured\tno-penalty",
                    dr->id, &mech, &service);

    if (rip) {
        p = ngx_sprintf(p, "\trip=%*s", rip, req->client.data);
    }

    p = ngx_cpymem(p, "\tresp=", sizeof("\tresp=") - 1);

    resp.data = p;
    ngx_encode_base64(&resp, &plain);
    p += resp.len;

    *p++ = LF;

    ngx_explicit_memzero(plain.data, plain.len);

    return p - start;
}


/* an answer, told from the posted event */

void
ngx_mail_plus_dovecot_answer(ngx_mail_plus_dovecot_pool_t *pool,
    ngx_mail_plus_dir_req_t *req, ngx_uint_t result, char *error)
{
    req->result = result;

    if (error) {
        req->error.data = (u_char *) error;
        req->error.len = ngx_strlen(error);
    }

    ngx_queue_insert_tail(&pool->done, &req->queue);

    if (!pool->done_event.posted) {
        ngx_post_event(&pool->done_event, &ngx_posted_events);
    }
}


static void
ngx_mail_plus_dovecot_done(ngx_event_t *ev)
{
    ngx_queue_t                   *q;
    ngx_mail_plus_dir_req_t       *req;
    ngx_mail_plus_dovecot_pool_t  *pool;

    pool = ev->data;

    while (!ngx_queue_empty(&pool->done)) {
        q = ngx_queue_head(&pool->done);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);
        req->ctx = NULL;

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "directory dovecot: request %p done: %ui",
                       req, req->result);

        ngx_mail_plus_dir_done(req);
    }
}
