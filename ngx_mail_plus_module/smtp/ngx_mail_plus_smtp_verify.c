
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_mail_plus_smtp_session.h"


/*
 * The recipient probe: whether a recipient of a pool whose users only the
 * backends know ("auth backend") exists is asked of the mailbox server the
 * router picks for it, the one the message would be delivered to:
 *
 *     LHLO (or EHLO) name, MAIL FROM:<>, RCPT TO:<address>, QUIT
 *
 * one command after the reply to the one before, each reply within the
 * timeout.  A 2xx reply to RCPT means the recipient exists, a 5xx that it
 * does not; anything else (no connection, a timeout, a 4xx, a refusal of
 * LHLO or MAIL) means the backend cannot tell now.  Answers are kept in
 * the router zone for "valid" (exists) or "invalid" (does not) seconds,
 * most recent first; when the zone is full the oldest go.  Without a zone
 * nothing is kept.
 *
 * The probe runs in the event loop and lives no longer than the session
 * that started it: the session cancels it when it ends.
 */


#define NGX_MAIL_PLUS_VERIFY_IN_SIZE    2048
#define NGX_MAIL_PLUS_VERIFY_KEY_LEN    512


typedef enum {
    ngx_mail_plus_verify_greeting = 0,
    ngx_mail_plus_verify_lhlo,
    ngx_mail_plus_verify_mail,
    ngx_mail_plus_verify_rcpt
} ngx_mail_plus_verify_state_e;


struct ngx_mail_plus_verify_s {
    ngx_pool_t                       *pool;
    ngx_log_t                         log;
    ngx_peer_connection_t             peer;
    ngx_buf_t                        *in;
    ngx_buf_t                        *out;
    ngx_mail_plus_verify_state_e      state;
    ngx_msec_t                        timeout;
    ngx_str_t                         login;
    ngx_str_t                         helo;
    ngx_str_t                         key;
    time_t                            valid;
    time_t                            invalid;
    ngx_uint_t                        lmtp;
    ngx_mail_plus_verify_handler_pt   handler;
    void                             *data;
};


typedef struct {
    ngx_str_node_t                    sn;
    ngx_queue_t                       queue;
    time_t                            expires;
    ngx_uint_t                        exists;
    u_char                            data[1];
} ngx_mail_plus_verify_node_t;


static ngx_mail_plus_verify_t *ngx_mail_plus_verify_create(
    ngx_mail_plus_verify_conf_t *vc, ngx_mail_plus_route_t *route,
    ngx_str_t *helo, ngx_str_t *key, ngx_log_t *log);
static ngx_int_t ngx_mail_plus_verify_connect(ngx_mail_plus_verify_t *v,
    ngx_mail_plus_route_t *route, ngx_log_t *log);
static void ngx_mail_plus_verify_read_handler(ngx_event_t *rev);
static void ngx_mail_plus_verify_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_mail_plus_verify_reply(ngx_mail_plus_verify_t *v,
    ngx_uint_t *code);
static ngx_int_t ngx_mail_plus_verify_next(ngx_mail_plus_verify_t *v,
    ngx_uint_t code);
static ngx_int_t ngx_mail_plus_verify_send(ngx_mail_plus_verify_t *v);
static void ngx_mail_plus_verify_done(ngx_mail_plus_verify_t *v,
    ngx_int_t rc);
static ngx_mail_plus_zone_t *ngx_mail_plus_verify_zone(void);
static ngx_int_t ngx_mail_plus_verify_cache_get(ngx_str_t *key,
    ngx_log_t *log);
static void ngx_mail_plus_verify_cache_set(ngx_str_t *key, ngx_uint_t exists,
    time_t valid, ngx_log_t *log);


/*
 * NGX_OK: the recipient exists, NGX_DECLINED: it does not (both from the
 * zone, even when its server is down now); NGX_AGAIN: a probe was started
 * (*vp), its handler gets NGX_OK, NGX_DECLINED or NGX_ERROR; NGX_ERROR:
 * the backend cannot be asked
 */

ngx_int_t
ngx_mail_plus_verify(ngx_mail_plus_verify_conf_t *vc,
    ngx_mail_plus_route_t *route, ngx_str_t *helo,
    ngx_mail_plus_verify_handler_pt handler, void *data, ngx_log_t *log,
    ngx_mail_plus_verify_t **vp)
{
    ngx_int_t                rc;
    ngx_str_t                key;
    ngx_mail_plus_verify_t  *v;
    u_char                   buf[NGX_MAIL_PLUS_VERIFY_KEY_LEN];

    *vp = NULL;

    if (route->login.len == 0) {
        return NGX_ERROR;
    }

    /* the key: the address as the backend is given it, in lower case */

    key.len = ngx_min(route->login.len, NGX_MAIL_PLUS_VERIFY_KEY_LEN);
    key.data = buf;
    ngx_strlow(buf, route->login.data, key.len);

    if (route->login.len <= NGX_MAIL_PLUS_VERIFY_KEY_LEN) {
        rc = ngx_mail_plus_verify_cache_get(&key, log);

        if (rc != NGX_AGAIN) {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                           "smtp: verify \"%V\" cache hit: %i",
                           &route->login, rc);
            return rc;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                       "smtp: verify \"%V\" cache miss", &route->login);
    }

    /* no answer kept: the server is asked, if there is one up */

    if (route->status != NGX_MAIL_PLUS_ALLOW || route->server == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "recipient \"%V\" cannot be verified: %V",
                      &route->login, &route->reason);
        return NGX_ERROR;
    }

    v = ngx_mail_plus_verify_create(vc, route, helo, &key, log);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->handler = handler;
    v->data = data;

    if (ngx_mail_plus_verify_connect(v, route, log) != NGX_OK) {
        ngx_destroy_pool(v->pool);
        return NGX_ERROR;
    }

    *vp = v;

    return NGX_AGAIN;
}


/* a probe in its own pool, with its buffers; the key kept if it is whole */

static ngx_mail_plus_verify_t *
ngx_mail_plus_verify_create(ngx_mail_plus_verify_conf_t *vc,
    ngx_mail_plus_route_t *route, ngx_str_t *helo, ngx_str_t *key,
    ngx_log_t *log)
{
    ngx_pool_t              *pool;
    ngx_mail_plus_verify_t  *v;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    v = ngx_pcalloc(pool, sizeof(ngx_mail_plus_verify_t));
    if (v == NULL) {
        goto failed;
    }

    v->pool = pool;
    v->log = *log;
    v->log.action = "verifying a recipient with its mailbox server";
    v->timeout = vc->timeout;
    v->valid = vc->valid;
    v->invalid = vc->invalid;
    v->lmtp = (route->protocol == NGX_MAIL_PLUS_LMTP);

    v->login.data = ngx_pstrdup(pool, &route->login);
    v->helo.data = ngx_pstrdup(pool, helo);
    v->key.data = ngx_pnalloc(pool, key->len);

    if (v->login.data == NULL || v->helo.data == NULL || v->key.data == NULL) {
        goto failed;
    }

    v->login.len = route->login.len;
    v->helo.len = helo->len;
    v->key.len = (route->login.len <= NGX_MAIL_PLUS_VERIFY_KEY_LEN)
                 ? key->len : 0;
    ngx_memcpy(v->key.data, key->data, key->len);

    v->in = ngx_create_temp_buf(pool, NGX_MAIL_PLUS_VERIFY_IN_SIZE);

    /* the longest command: "RCPT TO:<" address ">" CRLF */

    v->out = ngx_create_temp_buf(pool, ngx_max(route->login.len, helo->len)
                                       + sizeof("MAIL FROM:<>" CRLF) + 16);

    if (v->in == NULL || v->out == NULL) {
        goto failed;
    }

    return v;

failed:

    ngx_destroy_pool(pool);

    return NULL;
}


/* the connection to the mailbox server, which greets first */

static ngx_int_t
ngx_mail_plus_verify_connect(ngx_mail_plus_verify_t *v,
    ngx_mail_plus_route_t *route, ngx_log_t *log)
{
    ngx_int_t          rc;
    struct sockaddr   *sa;
    ngx_connection_t  *c;

    sa = ngx_palloc(v->pool, route->server->addr.socklen);
    if (sa == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(sa, route->server->addr.sockaddr, route->server->addr.socklen);
    ngx_inet_set_port(sa, route->port);

    v->peer.sockaddr = sa;
    v->peer.socklen = route->server->addr.socklen;
    v->peer.name = &route->server->name;
    v->peer.get = ngx_event_get_peer;
    v->peer.log = &v->log;
    v->peer.log_error = NGX_ERROR_ERR;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, log, 0,
                   "smtp: verify \"%V\" connect to %V port %ud", &v->login,
                   &route->server->name, (ngx_uint_t) route->port);

    rc = ngx_event_connect_peer(&v->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "cannot connect to %V to verify \"%V\"",
                      &route->server->name, &route->login);

        if (v->peer.connection) {
            ngx_close_connection(v->peer.connection);
        }

        return NGX_ERROR;
    }

    c = v->peer.connection;

    c->data = v;
    c->pool = v->pool;
    c->log = &v->log;
    c->read->log = &v->log;
    c->write->log = &v->log;

    c->read->handler = ngx_mail_plus_verify_read_handler;
    c->write->handler = ngx_mail_plus_verify_write_handler;

    v->state = ngx_mail_plus_verify_greeting;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                   "smtp: verify connect %i, greeting awaited, timer %M",
                   rc, v->timeout);

    ngx_add_timer(c->read, v->timeout);

    return NGX_OK;
}


/* the session ends first: the probe ends with it, its handler not called */

void
ngx_mail_plus_verify_cancel(ngx_mail_plus_verify_t *v)
{
    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &v->log, 0,
                   "smtp: verify \"%V\" cancelled", &v->login);

    if (v->peer.connection) {
        ngx_close_connection(v->peer.connection);
        v->peer.connection = NULL;
    }

    ngx_destroy_pool(v->pool);
}


static void
ngx_mail_plus_verify_read_handler(ngx_event_t *rev)
{
    ssize_t                  n;
    ngx_int_t                rc;
    ngx_uint_t               code;
    ngx_connection_t        *c;
    ngx_mail_plus_verify_t  *v;

    c = rev->data;
    v = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_WARN, c->log, NGX_ETIMEDOUT,
                      "mailbox server %V timed out", v->peer.name);
        ngx_mail_plus_verify_done(v, NGX_ERROR);
        return;
    }

    for ( ;; ) {

        if (v->in->last == v->in->end) {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "mailbox server %V sent too long a reply",
                          v->peer.name);
            ngx_mail_plus_verify_done(v, NGX_ERROR);
            return;
        }

        n = c->recv(c, v->in->last, v->in->end - v->in->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "mailbox server %V closed the connection",
                          v->peer.name);
            ngx_mail_plus_verify_done(v, NGX_ERROR);
            return;
        }

        v->in->last += n;

        rc = ngx_mail_plus_verify_reply(v, &code);

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "mailbox server %V sent an invalid reply",
                          v->peer.name);
            ngx_mail_plus_verify_done(v, NGX_ERROR);
            return;
        }

        rc = ngx_mail_plus_verify_next(v, code);

        if (rc != NGX_AGAIN) {
            ngx_mail_plus_verify_done(v, rc);
            return;
        }

        /* what came after the reply is not a reply to the next command */

        v->in->pos = v->in->start;
        v->in->last = v->in->start;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_plus_verify_done(v, NGX_ERROR);
    }
}


static void
ngx_mail_plus_verify_write_handler(ngx_event_t *wev)
{
    ngx_connection_t        *c;
    ngx_mail_plus_verify_t  *v;

    c = wev->data;
    v = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_WARN, c->log, NGX_ETIMEDOUT,
                      "mailbox server %V timed out", v->peer.name);
        ngx_mail_plus_verify_done(v, NGX_ERROR);
        return;
    }

    if (ngx_mail_plus_verify_send(v) == NGX_ERROR) {
        ngx_mail_plus_verify_done(v, NGX_ERROR);
    }
}


/*
 * a whole reply in v->in: NGX_OK and its code; NGX_AGAIN: not yet;
 * NGX_ERROR: not an SMTP reply
 */

static ngx_int_t
ngx_mail_plus_verify_reply(ngx_mail_plus_verify_t *v, ngx_uint_t *code)
{
    u_char  *p, *line, *lf;

    line = v->in->pos;

    for ( ;; ) {
        lf = ngx_strlchr(line, v->in->last, LF);

        if (lf == NULL) {
            v->in->pos = line;
            return NGX_AGAIN;
        }

        p = line;

        if (lf - p < 3
            || p[0] < '2' || p[0] > '5'
            || p[1] < '0' || p[1] > '9'
            || p[2] < '0' || p[2] > '9')
        {
            return NGX_ERROR;
        }

        if (lf - p > 3 && p[3] == '-') {
            line = lf + 1;
            continue;
        }

        *code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &v->log, 0,
                       "smtp: verify state %ui, reply %ui read",
                       (ngx_uint_t) v->state, *code);

        v->in->pos = lf + 1;

        return NGX_OK;
    }
}


/* the reply to one step: NGX_AGAIN (the next step is sent) or the answer */

static ngx_int_t
ngx_mail_plus_verify_next(ngx_mail_plus_verify_t *v, ngx_uint_t code)
{
    u_char     *p;
    ngx_buf_t  *out;

    out = v->out;
    p = out->last;

    if (v->state == ngx_mail_plus_verify_rcpt) {

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &v->log, 0,
                       "smtp: verify reply %ui to RCPT", code);

        if (code >= 200 && code < 300) {
            return NGX_OK;
        }

        if (code >= 500) {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_WARN, &v->log, 0,
                      "mailbox server %V answered %ui to RCPT of \"%V\"",
                      v->peer.name, code, &v->login);
        return NGX_ERROR;
    }

    if (code < 200 || code >= 300) {
        ngx_log_error(NGX_LOG_WARN, &v->log, 0,
                      "mailbox server %V answered %ui before RCPT",
                      v->peer.name, code);
        return NGX_ERROR;
    }

    switch (v->state) {

    case ngx_mail_plus_verify_greeting:
        p = ngx_sprintf(p, "%s %V" CRLF, v->lmtp ? "LHLO" : "EHLO", &v->helo);
        v->state = ngx_mail_plus_verify_lhlo;
        break;

    case ngx_mail_plus_verify_lhlo:
        p = ngx_cpymem(p, "MAIL FROM:<>" CRLF, sizeof("MAIL FROM:<>" CRLF) - 1);
        v->state = ngx_mail_plus_verify_mail;
        break;

    default: /* ngx_mail_plus_verify_mail */
        p = ngx_sprintf(p, "RCPT TO:<%V>" CRLF, &v->login);
        v->state = ngx_mail_plus_verify_rcpt;
        break;
    }

    out->last = p;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &v->log, 0,
                   "smtp: verify reply %ui, step %ui sent",
                   code, (ngx_uint_t) v->state);

    if (ngx_mail_plus_verify_send(v) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static ngx_int_t
ngx_mail_plus_verify_send(ngx_mail_plus_verify_t *v)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = v->peer.connection;

    while (v->out->pos < v->out->last) {

        n = c->send(c, v->out->pos, v->out->last - v->out->pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            ngx_add_timer(c->write, v->timeout);

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        v->out->pos += n;
    }

    v->out->pos = v->out->start;
    v->out->last = v->out->start;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* the reply to what was sent */

    ngx_add_timer(c->read, v->timeout);

    return NGX_OK;
}


static void
ngx_mail_plus_verify_done(ngx_mail_plus_verify_t *v, ngx_int_t rc)
{
    void                             *data;
    ngx_connection_t                 *c;
    ngx_mail_plus_verify_handler_pt   handler;

    c = v->peer.connection;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &v->log, 0,
                   "smtp: verify \"%V\" result %i", &v->login, rc);

    if (rc != NGX_ERROR) {

        /* a polite end; no reply is awaited */

        (void) c->send(c, (u_char *) "QUIT" CRLF, sizeof("QUIT" CRLF) - 1);

        if (v->key.len) {
            ngx_mail_plus_verify_cache_set(&v->key, rc == NGX_OK,
                                           rc == NGX_OK ? v->valid
                                                        : v->invalid,
                                           &v->log);
        }
    }

    ngx_close_connection(c);
    v->peer.connection = NULL;

    handler = v->handler;
    data = v->data;

    ngx_destroy_pool(v->pool);

    handler(data, rc);
}


static ngx_mail_plus_zone_t *
ngx_mail_plus_verify_zone(void)
{
    ngx_mail_plus_zone_t       *zone;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    if (mpcf == NULL || mpcf->shm_zone == NULL) {
        return NULL;
    }

    zone = mpcf->shm_zone->data;

    return zone->sh ? zone : NULL;
}


/* NGX_OK, NGX_DECLINED: a live answer; NGX_AGAIN: none */

static ngx_int_t
ngx_mail_plus_verify_cache_get(ngx_str_t *key, ngx_log_t *log)
{
    ngx_int_t                     rc;
    ngx_mail_plus_zone_t         *zone;
    ngx_mail_plus_verify_node_t  *node;

    zone = ngx_mail_plus_verify_zone();

    if (zone == NULL) {
        return NGX_AGAIN;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = (ngx_mail_plus_verify_node_t *)
               ngx_str_rbtree_lookup(&zone->sh->verify, key,
                                     ngx_crc32_short(key->data, key->len));

    if (node == NULL) {
        rc = NGX_AGAIN;

    } else if (node->expires <= ngx_time()) {
        ngx_rbtree_delete(&zone->sh->verify, &node->sn.node);
        ngx_queue_remove(&node->queue);
        ngx_slab_free_locked(zone->shpool, node);
        rc = NGX_AGAIN;

    } else {
        rc = node->exists ? NGX_OK : NGX_DECLINED;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


static void
ngx_mail_plus_verify_cache_set(ngx_str_t *key, ngx_uint_t exists,
    time_t valid, ngx_log_t *log)
{
    size_t                        size;
    uint32_t                      hash;
    ngx_uint_t                    i;
    ngx_queue_t                  *q;
    ngx_mail_plus_zone_t         *zone;
    ngx_mail_plus_verify_node_t  *node;

    zone = ngx_mail_plus_verify_zone();

    if (zone == NULL || valid == 0) {
        return;
    }

    hash = ngx_crc32_short(key->data, key->len);
    size = offsetof(ngx_mail_plus_verify_node_t, data) + key->len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = (ngx_mail_plus_verify_node_t *)
               ngx_str_rbtree_lookup(&zone->sh->verify, key, hash);

    if (node) {
        ngx_queue_remove(&node->queue);
        goto set;
    }

    /* stale answers at the old end go as a new one comes */

    for (i = 0; i < 2 && !ngx_queue_empty(&zone->sh->verify_queue); i++) {
        q = ngx_queue_last(&zone->sh->verify_queue);
        node = ngx_queue_data(q, ngx_mail_plus_verify_node_t, queue);

        if (node->expires > ngx_time()) {
            break;
        }

        ngx_rbtree_delete(&zone->sh->verify, &node->sn.node);
        ngx_queue_remove(&node->queue);
        ngx_slab_free_locked(zone->shpool, node);
    }

    /* when the zone is full, the oldest answers make room */

    for (i = 0; /* void */ ; i++) {
        node = ngx_slab_alloc_locked(zone->shpool, size);

        if (node) {
            break;
        }

        if (i == 16 || ngx_queue_empty(&zone->sh->verify_queue)) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mail router zone \"%V\" is full, "
                          "a recipient answer is not kept",
                          &zone->mpcf->shm_zone->shm.name);
            return;
        }

        q = ngx_queue_last(&zone->sh->verify_queue);
        node = ngx_queue_data(q, ngx_mail_plus_verify_node_t, queue);

        ngx_rbtree_delete(&zone->sh->verify, &node->sn.node);
        ngx_queue_remove(&node->queue);
        ngx_slab_free_locked(zone->shpool, node);
    }

    ngx_memcpy(node->data, key->data, key->len);
    node->sn.str.len = key->len;
    node->sn.str.data = node->data;
    node->sn.node.key = hash;

    ngx_rbtree_insert(&zone->sh->verify, &node->sn.node);

set:

    node->exists = exists;
    node->expires = ngx_time() + valid;

    ngx_queue_insert_head(&zone->sh->verify_queue, &node->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
