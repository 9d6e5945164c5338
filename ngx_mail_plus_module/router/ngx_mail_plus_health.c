
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"


/*
 * Backend health.  Every worker keeps a timer for each backend address
 * and port, but one check an interval is made in all: the worker whose
 * timer fires first claims it in the shared zone.  A check connects and
 * reads the banner (POP3 "+OK", IMAP "* OK", SMTP and LMTP "220").  After
 * "fails" failed checks in a row a server is down, after "passes" good
 * ones it is up again; failures that sessions and deliveries meet count
 * the same.  Each change is logged once, by the process that made it.
 */


typedef struct {
    ngx_mail_plus_health_t     *health;
    ngx_mail_plus_main_conf_t  *mpcf;
    ngx_uint_t                  protocol;
    ngx_str_t                   name;
    struct sockaddr            *sockaddr;
    socklen_t                   socklen;
    ngx_event_t                 timer;
    ngx_peer_connection_t       peer;
    ngx_log_t                  *log;
    size_t                      received;
    u_char                      buf[64];
} ngx_mail_plus_health_peer_t;


static void ngx_mail_plus_health_timer(ngx_event_t *ev);
static void ngx_mail_plus_health_connect(ngx_mail_plus_health_peer_t *hp);
static void ngx_mail_plus_health_read(ngx_event_t *rev);
static void ngx_mail_plus_health_write(ngx_event_t *wev);
static void ngx_mail_plus_health_done(ngx_mail_plus_health_peer_t *hp,
    ngx_uint_t ok, char *reason);
static void ngx_mail_plus_health_result(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_health_t *health, ngx_uint_t protocol, ngx_uint_t ok,
    char *reason, ngx_log_t *log);


static ngx_str_t  ngx_mail_plus_health_banner[] = {
    ngx_string("* OK"),
    ngx_string("+OK"),
    ngx_string("220"),
    ngx_string("220")
};


static ngx_str_t  ngx_mail_plus_health_quit[] = {
    ngx_string("c LOGOUT" CRLF),
    ngx_string("QUIT" CRLF),
    ngx_string("QUIT" CRLF),
    ngx_string("QUIT" CRLF)
};


static char  *ngx_mail_plus_health_protocol[] = {
    "imap", "pop3", "smtp", "lmtp"
};


ngx_int_t
ngx_mail_plus_health_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_main_conf_t *mpcf)
{
    ngx_uint_t                    i, n, k, j;
    ngx_array_t                   peers;
    ngx_mail_plus_pool_t        **pools;
    ngx_mail_plus_server_t       *servers;
    ngx_mail_plus_health_peer_t  *hp, **php;

    if (ngx_array_init(&peers, cycle->pool, 8,
                       sizeof(ngx_mail_plus_health_peer_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    pools = mpcf->pools.elts;

    for (i = 0; i < mpcf->pools.nelts; i++) {
        servers = pools[i]->servers.elts;

        for (n = 0; n < pools[i]->servers.nelts; n++) {
            for (k = 0; k < NGX_MAIL_PLUS_NPROTOCOLS; k++) {

                if (servers[n].health[k] == NULL) {
                    continue;
                }

                /* one check for an address and port, whoever uses it */

                php = peers.elts;

                for (j = 0; j < peers.nelts; j++) {
                    if (php[j]->health == servers[n].health[k]) {
                        break;
                    }
                }

                if (j < peers.nelts) {
                    continue;
                }

                hp = ngx_pcalloc(cycle->pool,
                                 sizeof(ngx_mail_plus_health_peer_t));
                if (hp == NULL) {
                    return NGX_ERROR;
                }

                hp->health = servers[n].health[k];
                hp->mpcf = mpcf;
                hp->protocol = k;

                /*
                 * a refused check is no news at "info": what counts is
                 * logged once, when the state changes
                 */

                hp->log = ngx_palloc(cycle->pool, sizeof(ngx_log_t));
                if (hp->log == NULL) {
                    return NGX_ERROR;
                }

                *hp->log = *cycle->log;

                if (hp->log->log_level > NGX_LOG_NOTICE) {
                    hp->log->log_level = NGX_LOG_NOTICE;
                }

                hp->name.data = hp->health->name;
                hp->name.len = ngx_strlen(hp->health->name);

                hp->socklen = servers[n].addr.socklen;
                hp->sockaddr = ngx_palloc(cycle->pool, hp->socklen);
                if (hp->sockaddr == NULL) {
                    return NGX_ERROR;
                }

                ngx_memcpy(hp->sockaddr, servers[n].addr.sockaddr,
                           hp->socklen);
                ngx_inet_set_port(hp->sockaddr, servers[n].port[k]);

                hp->timer.handler = ngx_mail_plus_health_timer;
                hp->timer.data = hp;
                hp->timer.log = hp->log;
                hp->timer.cancelable = 1;

                /* the workers' timers spread over the interval */

                ngx_add_timer(&hp->timer,
                              ngx_random() % mpcf->check_interval + 1);

                php = ngx_array_push(&peers);
                if (php == NULL) {
                    return NGX_ERROR;
                }

                *php = hp;
            }
        }
    }

    return NGX_OK;
}


static void
ngx_mail_plus_health_timer(ngx_event_t *ev)
{
    ngx_uint_t                    claim;
    ngx_msec_t                    now;
    ngx_mail_plus_zone_t         *zone;
    ngx_mail_plus_health_peer_t  *hp;

    hp = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, hp->mpcf->check_interval);

    if (hp->peer.connection) {
        return;   /* the last check of this worker is not done yet */
    }

    zone = hp->mpcf->shm_zone->data;
    now = ngx_current_msec;
    claim = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (hp->health->checked == 0
        || (ngx_msec_int_t) (now - hp->health->checked)
           >= (ngx_msec_int_t) (hp->mpcf->check_interval
                                - hp->mpcf->check_interval / 4))
    {
        hp->health->checked = now;
        claim = 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!claim) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, hp->log, 0,
                       "router: health of %s %V checked by another worker",
                       ngx_mail_plus_health_protocol[hp->protocol],
                       &hp->name);
        return;
    }

    ngx_mail_plus_health_connect(hp);
}


static void
ngx_mail_plus_health_connect(ngx_mail_plus_health_peer_t *hp)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_memzero(&hp->peer, sizeof(ngx_peer_connection_t));

    hp->peer.sockaddr = hp->sockaddr;
    hp->peer.socklen = hp->socklen;
    hp->peer.name = &hp->name;
    hp->peer.get = ngx_event_get_peer;
    hp->peer.log = hp->log;
    hp->peer.log_error = NGX_ERROR_INFO;
    hp->received = 0;

    rc = ngx_event_connect_peer(&hp->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (hp->peer.connection) {
            ngx_close_connection(hp->peer.connection);
            hp->peer.connection = NULL;
        }

        ngx_mail_plus_health_result(hp->mpcf, hp->health, hp->protocol, 0,
                                    "connect failed", hp->log);
        return;
    }

    c = hp->peer.connection;

    c->data = hp;
    c->log = hp->log;
    c->read->log = hp->log;
    c->write->log = hp->log;
    c->read->handler = ngx_mail_plus_health_read;
    c->write->handler = ngx_mail_plus_health_write;

    ngx_add_timer(c->read, hp->mpcf->check_timeout);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, hp->log, 0,
                   "router: health check of %s %V sent, connect: %i",
                   ngx_mail_plus_health_protocol[hp->protocol], &hp->name,
                   rc);

    if (rc == NGX_OK && c->read->ready) {
        ngx_mail_plus_health_read(c->read);
    }
}


static void
ngx_mail_plus_health_write(ngx_event_t *wev)
{
    /* connected: the banner is read by the read handler */
}


static void
ngx_mail_plus_health_read(ngx_event_t *rev)
{
    size_t                        len;
    ssize_t                       n;
    ngx_str_t                    *banner;
    ngx_connection_t             *c;
    ngx_mail_plus_health_peer_t  *hp;

    c = rev->data;
    hp = c->data;

    if (rev->timedout) {
        ngx_mail_plus_health_done(hp, 0, "timed out");
        return;
    }

    n = c->recv(c, hp->buf + hp->received, sizeof(hp->buf) - hp->received);

    if (n == NGX_AGAIN) {
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_mail_plus_health_done(hp, 0, "event error");
        }

        return;
    }

    if (n == NGX_ERROR || n == 0) {
        ngx_mail_plus_health_done(hp, 0, "connection refused or closed");
        return;
    }

    hp->received += n;

    banner = &ngx_mail_plus_health_banner[hp->protocol];
    len = ngx_min(hp->received, banner->len);

    if (ngx_strncmp(hp->buf, banner->data, len) != 0) {
        ngx_mail_plus_health_done(hp, 0, "unexpected banner");
        return;
    }

    if (hp->received < banner->len) {
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_mail_plus_health_done(hp, 0, "event error");
        }

        return;
    }

    /* a polite goodbye; whether it is read does not matter */

    (void) c->send(c, ngx_mail_plus_health_quit[hp->protocol].data,
                   ngx_mail_plus_health_quit[hp->protocol].len);

    ngx_mail_plus_health_done(hp, 1, NULL);
}


static void
ngx_mail_plus_health_done(ngx_mail_plus_health_peer_t *hp, ngx_uint_t ok,
    char *reason)
{
    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, hp->log, 0,
                   "router: health check of %V: %s%s", &hp->name,
                   ok ? "passed" : "failed, ", reason ? reason : "");

    ngx_close_connection(hp->peer.connection);
    hp->peer.connection = NULL;

    ngx_mail_plus_health_result(hp->mpcf, hp->health, hp->protocol, ok,
                                reason, hp->log);
}


/* what sessions and deliveries meet counts as a check */

void
ngx_mail_plus_health_report(ngx_mail_plus_server_t *server,
    ngx_uint_t protocol, ngx_uint_t ok, ngx_log_t *log)
{
    ngx_mail_plus_main_conf_t  *mpcf;

    if (server->health[protocol] == NULL) {
        return;
    }

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    /* without active checks nothing would bring the server back */

    if (mpcf == NULL || mpcf->shm_zone == NULL || !mpcf->check) {
        return;
    }

    ngx_mail_plus_health_result(mpcf, server->health[protocol], protocol, ok,
                                ok ? NULL : "failed in use", log);
}


static void
ngx_mail_plus_health_result(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_health_t *health, ngx_uint_t protocol, ngx_uint_t ok,
    char *reason, ngx_log_t *log)
{
    ngx_uint_t             changed;
    ngx_mail_plus_zone_t  *zone;

    zone = mpcf->shm_zone->data;
    changed = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (ok) {
        health->fails = 0;
        health->passes++;

        if (health->down && health->passes >= mpcf->check_passes) {
            health->down = 0;
            changed = 1;
        }

    } else {
        health->passes = 0;
        health->fails++;

        if (!health->down && health->fails >= mpcf->check_fails) {
            health->down = 1;
            changed = 1;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug5(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: health of %s %s: %s, fails %ui, passes %ui",
                   ngx_mail_plus_health_protocol[protocol], health->name,
                   ok ? "ok" : "failure", health->fails, health->passes);

    if (!changed) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: %s server %s marked %s",
                   ngx_mail_plus_health_protocol[protocol], health->name,
                   ok ? "up" : "down");

    if (ok) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "mail router: %s server %s is up",
                      ngx_mail_plus_health_protocol[protocol], health->name);

    } else {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "mail router: %s server %s is down: %s",
                      ngx_mail_plus_health_protocol[protocol], health->name,
                      reason);
    }
}
