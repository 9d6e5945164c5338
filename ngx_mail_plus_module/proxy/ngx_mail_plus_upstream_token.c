
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The backend login after a token login (the router's route.token), as
 * the pool's "token_login" says:
 *
 *   - token: the client's token goes on, in a SASL response of the
 *     mechanism the backend offers: OAUTHBEARER (RFC 7628, with the
 *     backend's address as "host" and "port"), else XOAUTH2; a backend
 *     that offers neither cannot take the login, and that is logged.
 *     A refusal is the RFC 7628 error exchange: a continuation with the
 *     JSON status, answered with the dummy response "\001", then NO/-ERR;
 *   - master: the login is "LOGIN*USER" with the master user's password,
 *     Dovecot's master user convention (auth_master_user_separator "*"),
 *     sent as any password login is: one form for IMAP LOGIN, AUTHENTICATE
 *     PLAIN and POP3 USER/PASS alike, where PLAIN's authzid would leave
 *     POP3 USER/PASS out.
 *
 * The token and the master password are never logged.
 * ngx_mail_plus_upstream.c sends what is made here.
 */


/*
 * what the backend login sends: the login and the password the router
 * checked, a master user's login and password, or the token
 */

ngx_int_t
ngx_mail_plus_upstream_token_init(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char                 *p, *last;
    ngx_mail_plus_pool_t   *pool;
    ngx_mail_plus_check_t  *check;

    check = ctx->check;
    pool = check->route.pool;

    ctx->token_login = 0;
    ctx->token_mech = 0;
    ctx->token_cont = 0;

    if (!check->route.token) {
        ctx->up_login = check->route.login;
        ctx->up_password = check->auth.password;
        return NGX_OK;
    }

    if (pool->token_login == NGX_MAIL_PLUS_TOKEN_LOGIN_MASTER) {
        ctx->up_login.len = check->route.login.len + 1
                            + pool->master_user.len;
        ctx->up_login.data = ngx_pnalloc(s->connection->pool,
                                         ctx->up_login.len);
        if (ctx->up_login.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(ctx->up_login.data, "%V*%V", &check->route.login,
                    &pool->master_user);

        ctx->up_password = pool->master_password;

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "proxy: token login of \"%V\" to the backend as "
                       "master user \"%V\"", &ctx->user, &pool->master_user);
        return NGX_OK;
    }

    ctx->token_login = 1;
    ctx->up_login = check->route.login;
    ngx_str_null(&ctx->up_password);

    /* a bearer token is printable: no ^A or CR can end a field early */

    last = check->auth.token.data + check->auth.token.len;

    for (p = check->auth.token.data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return NGX_DECLINED;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: token login of \"%V\" to the backend with "
                   "the token", &ctx->user);

    return check->auth.token.len ? NGX_OK : NGX_DECLINED;
}


/* a mechanism the backend offers: "AUTH=NAME" (IMAP) or "NAME" (POP3) */

void
ngx_mail_plus_upstream_token_cap(ngx_mail_plus_proxy_ctx_t *ctx,
    u_char *name, size_t len)
{
    if (len > 5 && ngx_strncasecmp(name, (u_char *) "AUTH=", 5) == 0) {
        name += 5;
        len -= 5;
    }

    if (len == sizeof("OAUTHBEARER") - 1
        && ngx_strncasecmp(name, (u_char *) "OAUTHBEARER", len) == 0)
    {
        ctx->auth_oauthbearer = 1;

    } else if (len == sizeof("XOAUTH2") - 1
               && ngx_strncasecmp(name, (u_char *) "XOAUTH2", len) == 0)
    {
        ctx->auth_xoauth2 = 1;
    }
}


/* the mechanism of the login: NGX_OK, or NGX_DECLINED (logged) */

ngx_int_t
ngx_mail_plus_upstream_token_mech(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    if (ctx->auth_oauthbearer) {
        ctx->token_mech = NGX_MAIL_PLUS_SASL_OAUTHBEARER;

    } else if (ctx->auth_xoauth2) {
        ctx->token_mech = NGX_MAIL_PLUS_SASL_XOAUTH2;

    } else {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "backend %V offers no token mechanism (OAUTHBEARER, "
                      "XOAUTH2) for the token login of \"%V\"",
                      &ctx->backend, &ctx->user);
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend %V token login with %s", &ctx->backend,
                   ctx->token_mech == NGX_MAIL_PLUS_SASL_OAUTHBEARER
                   ? "OAUTHBEARER" : "XOAUTH2");

    return NGX_OK;
}


/* the most the response takes, in base64 with its CRLF */

size_t
ngx_mail_plus_upstream_token_len(ngx_mail_plus_proxy_ctx_t *ctx)
{
    return ngx_mail_plus_token_sasl_len(&ctx->up_login,
                                        &ctx->check->route.server->host,
                                        &ctx->check->auth.token);
}


/* the response in base64, then CRLF */

u_char *
ngx_mail_plus_upstream_token_response(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, u_char *p)
{
    ngx_mail_plus_route_t  *route;

    route = &ctx->check->route;

    p = ngx_mail_plus_token_sasl(s->connection->pool, ctx->token_mech,
                                 &ctx->up_login, &route->server->host,
                                 route->port, &ctx->check->auth.token, p);
    if (p == NULL) {
        return NULL;
    }

    *p++ = CR; *p++ = LF;

    return p;
}


/*
 * A token login's SASL response, also the JMAP endpoint's IMAP client's
 * (jmap/ngx_mail_plus_imap_client.c): the most it takes, in base64 with a
 * CRLF after it
 */

size_t
ngx_mail_plus_token_sasl_len(ngx_str_t *login, ngx_str_t *host,
    ngx_str_t *token)
{
    size_t  len;

    len = sizeof("n,a=,\1host=\1port=65535\1auth=Bearer \1\1") - 1
          + sizeof("user=") - 1
          + 3 * login->len + host->len + token->len;

    return ngx_base64_encoded_length(len) + 2;
}


/*
 * the response in base64 (no CRLF) at p, which has
 * ngx_mail_plus_token_sasl_len() bytes: OAUTHBEARER "n,a=LOGIN," ^A
 * "host=ADDR" ^A "port=PORT" ^A "auth=Bearer TOKEN" ^A ^A, the login with
 * "," and "=" escaped (RFC 5801); XOAUTH2 "user=LOGIN" ^A "auth=Bearer
 * TOKEN" ^A ^A.  The end of what is written, or NULL without memory.
 */

u_char *
ngx_mail_plus_token_sasl(ngx_pool_t *pool, ngx_uint_t mech, ngx_str_t *login,
    ngx_str_t *host, in_port_t port, ngx_str_t *token, u_char *p)
{
    u_char     *q, *c, *last;
    ngx_str_t   raw, encoded;

    raw.data = ngx_pnalloc(pool, ngx_mail_plus_token_sasl_len(login, host,
                                                              token));
    if (raw.data == NULL) {
        return NULL;
    }

    q = raw.data;

    if (mech == NGX_MAIL_PLUS_SASL_XOAUTH2) {
        q = ngx_sprintf(q, "user=%V\1", login);

    } else {
        q = ngx_cpymem(q, "n,a=", 4);

        last = login->data + login->len;

        for (c = login->data; c < last; c++) {
            if (*c == ',') {
                q = ngx_cpymem(q, "=2C", 3);

            } else if (*c == '=') {
                q = ngx_cpymem(q, "=3D", 3);

            } else {
                *q++ = *c;
            }
        }

        q = ngx_sprintf(q, ",\1host=%V\1port=%ui\1", host, (ngx_uint_t) port);
    }

    q = ngx_sprintf(q, "auth=Bearer %V\1\1", token);

    raw.len = q - raw.data;

    encoded.data = p;
    ngx_encode_base64(&encoded, &raw);

    /* the token is not kept in memory longer than needed */

    ngx_explicit_memzero(raw.data, raw.len);

    return p + encoded.len;
}
