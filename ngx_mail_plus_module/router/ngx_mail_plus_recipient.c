
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"


/*
 * A recipient in a local domain, as the router sees it.  The SMTP session
 * asks at RCPT, the recipient probe asks which server to ask, and the
 * delivery asks where the message goes: all three ask here, so the server
 * and the address the mailbox backend is given are those that were
 * checked at RCPT, byte for byte.
 *
 * The address is looked up whole, then by its local part alone; the first
 * that the users file knows, or that falls in a pool whose backends know
 * their users ("auth backend"), is the recipient.  Its mailbox server is
 * the pool's for LMTP if the server has an LMTP port and is up, else for
 * SMTP.
 */


static ngx_int_t ngx_mail_plus_recipient_route(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log);


/*
 * NGX_OK: route->pool is the recipient's pool, route->login the address
 * to give its mailbox server; route->status is NGX_MAIL_PLUS_ALLOW with
 * route->server, route->port and route->protocol, or TEMPFAIL when no
 * server is up for LMTP or SMTP; route->user is NULL if only the backend
 * can tell whether the recipient exists.
 * NGX_DECLINED: no such recipient (route->reason says why);
 * NGX_ERROR: no memory, or the router failed.
 */

ngx_int_t
ngx_mail_plus_recipient(ngx_mail_plus_main_conf_t *mpcf, ngx_str_t *addr,
    ngx_mail_plus_route_t *route, ngx_pool_t *pool, ngx_log_t *log)
{
    u_char                *at;
    ngx_uint_t             i;
    ngx_mail_plus_auth_t   auth;

    if (ngx_mail_plus_recipient_local_part(addr) != NGX_OK) {
        ngx_memzero(route, sizeof(ngx_mail_plus_route_t));
        route->status = NGX_MAIL_PLUS_DENY;
        ngx_str_set(&route->reason, "\"@\", \"%\", \"!\" or a control "
                    "character in the local part");
        return NGX_DECLINED;
    }

    ngx_memzero(&auth, sizeof(ngx_mail_plus_auth_t));
    auth.login = *addr;
    auth.recipient = 1;

    for (i = 0; i < 2; i++) {

        if (ngx_mail_plus_recipient_route(mpcf, &auth, route, pool, log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_log_debug4(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: recipient \"%V\" as \"%V\": status %ui, "
                       "user %p", addr, &auth.login, route->status,
                       route->user);

        if (route->pool
            && (route->user || route->pool->auth == NGX_MAIL_PLUS_AUTH_BACKEND))
        {
            return NGX_OK;
        }

        /* the local part alone, as a login of the users file */

        for (at = addr->data + addr->len; at > addr->data; at--) {
            if (at[-1] == '@') {
                break;
            }
        }

        if (at == addr->data) {
            break;
        }

        auth.login.len = at - 1 - addr->data;
    }

    if (route->reason.len == 0) {
        ngx_str_set(&route->reason, "unknown user");
    }

    return NGX_DECLINED;
}


/*
 * a recipient that a directory looked up (auth->looked_up, auth->user its
 * answer, NULL if it did not know it): as ngx_mail_plus_recipient(), the
 * whole address only
 */

ngx_int_t
ngx_mail_plus_recipient_user(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_auth_t  a;

    a = *auth;
    a.check = 0;
    a.recipient = 1;

    if (ngx_mail_plus_recipient_route(mpcf, &a, route, pool, log) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: recipient \"%V\" from a directory: status %ui, "
                   "user %p", &auth->login, route->status, route->user);

    if (route->pool
        && (route->user || route->pool->auth == NGX_MAIL_PLUS_AUTH_BACKEND))
    {
        return NGX_OK;
    }

    if (route->reason.len == 0) {
        ngx_str_set(&route->reason, "unknown user");
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_mail_plus_recipient_route(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_mail_plus_route_t  smtp;

    auth->protocol = NGX_MAIL_PLUS_LMTP;

    if (ngx_mail_plus_router_route(mpcf, auth, route, pool, log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (route->status == NGX_MAIL_PLUS_ALLOW || route->pool == NULL) {
        return NGX_OK;
    }

    /* no LMTP server up: SMTP, if the pool's server has it */

    auth->protocol = NGX_MAIL_PLUS_SMTP;

    if (ngx_mail_plus_router_route(mpcf, auth, &smtp, pool, log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (smtp.status == NGX_MAIL_PLUS_ALLOW) {
        *route = smtp;
    }

    return NGX_OK;
}
