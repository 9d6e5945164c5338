
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_mail_plus_smtp_session.h"
#include "ngx_mail_plus_token.h"


/*
 * SMTP AUTH (PLAIN and LOGIN, RFC 4954; OAUTHBEARER and XOAUTH2 where
 * "router_token_auth" offers them): the lines of its dialogue, the
 * router's check of the login and password or token, and the result; a
 * failure is answered after the router's delay.  A refused token gets
 * RFC 7628's challenge with the JSON status first, and the failure after
 * the client's answer to it.
 */


static void ngx_mail_plus_smtp_auth_start(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_auth_checked(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_smtp_auth_done(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_smtp_auth_challenge(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);


void
ngx_mail_plus_smtp_auth(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg)
{
    ngx_str_t                       mech, initial;
    ngx_mail_plus_srv_conf_t       *pscf;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;
    ngx_mail_plus_smtp_state_e      state;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);
    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (!ctx->esmtp) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: send EHLO first");
        return;
    }

    if (mpcf->pools.nelts == 0) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: authentication "
                                 "not enabled");
        return;
    }

    if (ctx->authenticated) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: already "
                                 "authenticated");
        return;
    }

    if (ctx->in_tx) {
        ngx_mail_plus_smtp_error(s, ctx, "503 5.5.1 Error: MAIL transaction "
                                 "in progress");
        return;
    }

    if (c->ssl == NULL && !sscf->auth_plaintext) {
        ngx_mail_plus_smtp_error(s, ctx, "538 5.7.11 Encryption required for "
                                 "requested authentication mechanism");
        return;
    }

    if (ngx_mail_plus_smtp_parse_auth(arg, &mech, &initial) != NGX_OK) {
        ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }

    s->args.nelts = 0;
    s->login.len = 0;
    s->passwd.len = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH, mechanism of %uz bytes, initial response: %ui",
                   mech.len, (ngx_uint_t) (initial.len != 0));

    if (mech.len == 5 && ngx_strncasecmp(mech.data, (u_char *) "PLAIN", 5) == 0)
    {
        if (initial.len == 0) {
            ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_plain);
            ngx_mail_plus_smtp_reply(ctx, "334 ");
            return;
        }

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_plain);
        ngx_mail_plus_smtp_auth_line(s, c, ctx, &initial);
        return;
    }

    if (mech.len == 5 && ngx_strncasecmp(mech.data, (u_char *) "LOGIN", 5) == 0)
    {
        if (initial.len == 0) {
            ngx_mail_plus_smtp_set_state(ctx,
                                         ngx_mail_plus_st_auth_login_username);
            ngx_mail_plus_smtp_reply(ctx, "334 VXNlcm5hbWU6");
            return;
        }

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_login_username);
        ngx_mail_plus_smtp_auth_line(s, c, ctx, &initial);
        return;
    }

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_module);

    ctx->token_mech = 0;
    state = ngx_mail_plus_st_command;

    if (mech.len == 11
        && ngx_strncasecmp(mech.data, (u_char *) "OAUTHBEARER", 11) == 0)
    {
        ctx->token_mech = pscf->token_mechs & NGX_MAIL_PLUS_SASL_OAUTHBEARER;
        state = ngx_mail_plus_st_auth_oauthbearer;

    } else if (mech.len == 7
               && ngx_strncasecmp(mech.data, (u_char *) "XOAUTH2", 7) == 0)
    {
        ctx->token_mech = pscf->token_mechs & NGX_MAIL_PLUS_SASL_XOAUTH2;
        state = ngx_mail_plus_st_auth_xoauth2;
    }

    if (ctx->token_mech) {
        ngx_mail_plus_smtp_set_state(ctx, state);

        if (initial.len == 0) {
            ngx_mail_plus_smtp_reply(ctx, "334 ");
            return;
        }

        ngx_mail_plus_smtp_auth_line(s, c, ctx, &initial);
        return;
    }

    ngx_mail_plus_smtp_error(s, ctx, "504 5.5.4 Error: unrecognized "
                             "authentication type");
}


/* a SASL response line */

void
ngx_mail_plus_smtp_auth_line(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   login;

    if (ctx->state == ngx_mail_plus_st_auth_token_error) {

        /* "\x01" as RFC 7628 asks, or anything else: the failure */

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: AUTH, the answer to the token's error");

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_mail_plus_smtp_error(s, ctx, "535 5.7.8 Error: authentication "
                                 "failed");
        return;
    }

    if (line->len == 1 && line->data[0] == '*') {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: AUTH aborted by the client");
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_mail_plus_smtp_error(s, ctx, "501 5.7.0 Authentication aborted");
        return;
    }

    /* decoded in place, then copied: the line buffer is read again */

    switch (ctx->state) {

    case ngx_mail_plus_st_auth_plain:
        rc = ngx_mail_plus_sasl_plain(line, &login, &s->passwd);
        break;

    case ngx_mail_plus_st_auth_login_username:
        rc = ngx_mail_plus_sasl_login(line, &login);
        break;

    case ngx_mail_plus_st_auth_oauthbearer:
        rc = ngx_mail_plus_sasl_oauthbearer(line, &login, &s->passwd);
        break;

    case ngx_mail_plus_st_auth_xoauth2:
        rc = ngx_mail_plus_sasl_xoauth2(line, &login, &s->passwd);
        break;

    default: /* ngx_mail_plus_st_auth_login_password */
        ngx_str_null(&login);
        rc = ngx_mail_plus_sasl_login(line, &s->passwd);
        break;
    }

    if (rc == NGX_OK && login.data) {
        s->login.len = login.len;
        s->login.data = ngx_pstrdup(c->pool, &login);

        if (s->login.data == NULL) {
            rc = NGX_ERROR;
        }
    }

    if (rc == NGX_OK && ctx->state == ngx_mail_plus_st_auth_login_username) {
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_login_password);
        ngx_mail_plus_smtp_reply(ctx, "334 UGFzc3dvcmQ6");
        return;
    }

    if (rc != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: AUTH response refused: %i", rc);

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
        ngx_str_null(&s->login);

        if (rc == NGX_ERROR) {
            ngx_mail_plus_smtp_reply(ctx, "454 4.7.0 Temporary "
                                     "authentication failure");
            return;
        }

        if (rc == NGX_ABORT) {
            ngx_mail_plus_smtp_error(s, ctx, "535 5.7.8 Authorization "
                                     "identity not allowed");
            return;
        }

        ngx_mail_plus_smtp_error(s, ctx, "501 5.5.2 Error: invalid "
                                 "authentication data");
        return;
    }

    /* the login goes to the envelope and the log: no control characters */

    for (p = s->login.data; p < s->login.data + s->login.len; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
            ngx_str_null(&s->login);
            ngx_mail_plus_smtp_error(s, ctx, "501 5.5.2 Error: invalid "
                                     "authentication data");
            return;
        }
    }

    ngx_mail_plus_smtp_auth_start(s, c, ctx);
}


/* the router checks the password, as for an HTTP submission */

static void
ngx_mail_plus_smtp_auth_start(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_check);

    ctx->check = ngx_mail_plus_check_create(mpcf, c->log);
    if (ctx->check == NULL) {
        goto failed;
    }

    if (ctx->token_mech) {

        /* a submission: the user's pool takes the first protocol it has */

        ctx->check->submission = 1;

        rc = ngx_mail_plus_check_set_token(ctx->check, NGX_MAIL_PLUS_SMTP,
                                           &s->login, &s->passwd,
                                           ctx->token_mech, &c->addr_text);
        ctx->token_mech = 0;

    } else {
        rc = ngx_mail_plus_check_set_submission(ctx->check, &s->login,
                                                &s->passwd, &c->addr_text);
    }

    if (rc != NGX_OK) {
        goto failed;
    }

    ctx->check->handler = ngx_mail_plus_smtp_auth_checked;
    ctx->check->data = s;

    /* the session ends in nginx: no backend would check the password */

    ctx->check->router_only = 1;

    rc = ngx_mail_plus_check_start(ctx->check);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH credentials to the router: %i", rc);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_OK) {
        ngx_mail_plus_smtp_auth_done(s, c, ctx);
        return;
    }

failed:

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
    ngx_mail_plus_smtp_reply(ctx, "454 4.7.0 Temporary authentication "
                             "failure");
}


static void
ngx_mail_plus_smtp_auth_checked(ngx_mail_plus_check_t *check)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    s = check->data;
    c = s->connection;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ngx_mail_plus_smtp_auth_done(s, c, ctx);

    ngx_mail_plus_smtp_run(s, c);
}


static void
ngx_mail_plus_smtp_auth_done(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    time_t                  delay;
    ngx_mail_plus_route_t  *route;

    route = &ctx->check->route;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH checked, route status %ui", route->status);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);

    if (route->status == NGX_MAIL_PLUS_ALLOW
        && (route->pool->auth == NGX_MAIL_PLUS_AUTH_ROUTER || route->token))
    {
        /* a token's user is the one it names */

        if (route->token) {
            s->login = ctx->check->auth.login;
        }

        ctx->login.data = ngx_pstrdup(c->pool, &s->login);

        if (ctx->login.data) {
            ctx->login.len = s->login.len;
            s->login = ctx->login;
            ctx->authenticated = 1;

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client authenticated as \"%V\"", &s->login);

            ngx_mail_plus_smtp_reply(ctx,
                                     "235 2.7.0 Authentication successful");
        }

        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
        return;
    }

    /*
     * a pool whose backends check passwords cannot be asked here: the
     * session ends in nginx
     */

    ctx->token_refused = route->bad_token;

    if (route->status == NGX_MAIL_PLUS_TEMPFAIL) {
        ngx_str_set(&ctx->auth_reply,
                    "454 4.7.0 Temporary authentication failure");

    } else if (route->bad_token) {
        if (ngx_mail_plus_smtp_auth_challenge(s, c, ctx) != NGX_OK) {
            ngx_str_set(&ctx->auth_reply,
                        "454 4.7.0 Temporary authentication failure");
            ctx->token_refused = 0;
        }

    } else {
        ngx_str_set(&ctx->auth_reply,
                    "535 5.7.8 Error: authentication failed");
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client login \"%V\" failed: %V", &s->login,
                  route->reason.len ? &route->reason : &ctx->auth_reply);

    /* the router's delay: it grows with the failures it counted */

    delay = (route->status == NGX_MAIL_PLUS_DENY) ? route->delay : 0;

    ngx_mail_plus_check_free(ctx->check);
    ctx->check = NULL;

    s->login.len = 0;

    if (delay == 0) {
        ngx_mail_plus_smtp_auth_delayed(s, ctx);
        return;
    }

    /* failures are answered late, as the auth_http endpoint does */

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: AUTH failed, reply after %T s", delay);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_delay);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, (ngx_msec_t) delay * 1000);
}


/* the answer to a failed AUTH, after the router's delay */

void
ngx_mail_plus_smtp_auth_delayed(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    if (ctx->token_refused) {
        ctx->token_refused = 0;

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "smtp: AUTH, the token's error challenge is sent");

        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_auth_token_error);
        ngx_mail_plus_smtp_reply(ctx, (char *) ctx->auth_reply.data);
        return;
    }

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
    ngx_mail_plus_smtp_error(s, ctx, (char *) ctx->auth_reply.data);
}


/* "334 " and RFC 7628's JSON status in base64, NUL-terminated */

static ngx_int_t
ngx_mail_plus_smtp_auth_challenge(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_str_t                  *json, b64;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    json = &mpcf->token->error;

    ctx->auth_reply.data = ngx_pnalloc(c->pool,
                               4 + ngx_base64_encoded_length(json->len) + 1);
    if (ctx->auth_reply.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->auth_reply.data, "334 ", 4);

    b64.data = ctx->auth_reply.data + 4;
    ngx_encode_base64(&b64, json);

    ctx->auth_reply.len = 4 + b64.len;
    ctx->auth_reply.data[ctx->auth_reply.len] = '\0';

    return NGX_OK;
}
