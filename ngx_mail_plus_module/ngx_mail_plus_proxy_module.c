
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * "router_proxy on" in a "protocol pop3" or "protocol imap" server: the
 * module takes the session over.  This file holds the directives, swaps
 * the server's protocol handler, asks the router when the client has
 * given its credentials, and ends the session with one log line.
 */


static ngx_int_t ngx_mail_plus_proxy_create_ctx(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t protocol);
static ngx_uint_t ngx_mail_plus_proxy_auth_methods(ngx_mail_session_t *s);
static void ngx_mail_plus_proxy_checked(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_proxy_answer(ngx_mail_session_t *s);
static void ngx_mail_plus_proxy_delayed(ngx_event_t *ev);
static void ngx_mail_plus_proxy_block(ngx_event_t *rev);
static void ngx_mail_plus_proxy_cleanup(void *data);
static u_char *ngx_mail_plus_proxy_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static void *ngx_mail_plus_proxy_create_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_proxy_merge_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_command_t  ngx_mail_plus_proxy_commands[] = {

    { ngx_string("router_proxy"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, enable),
      NULL },

    { ngx_string("router_proxy_connect_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, connect_timeout),
      NULL },

    { ngx_string("router_proxy_login_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, login_timeout),
      NULL },

    { ngx_string("router_proxy_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, timeout),
      NULL },

    { ngx_string("router_proxy_buffer"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, buffer_size),
      NULL },

    { ngx_string("router_proxy_user_sessions"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, user_sessions),
      NULL },

    { ngx_string("router_proxy_client_sessions"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, client_sessions),
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_proxy_module_ctx = {
    NULL,                                  /* protocol */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_mail_plus_proxy_create_conf,       /* create server configuration */
    ngx_mail_plus_proxy_merge_conf         /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_proxy_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_proxy_module_ctx,       /* module context */
    ngx_mail_plus_proxy_commands,          /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * the protocols a server switches to; never registered by name, so that
 * "protocol pop3" and "protocol imap" keep meaning the stock ones
 */

static ngx_mail_protocol_t  ngx_mail_plus_pop3_protocol = {
    ngx_string("pop3"),
    ngx_string("\x04pop3"),
    { 110, 995, 0, 0 },
    NGX_MAIL_POP3_PROTOCOL,

    ngx_mail_plus_pop3_init_session,
    ngx_mail_plus_pop3_init_protocol,
    ngx_mail_pop3_parse_command,
    ngx_mail_plus_pop3_auth_state,

    ngx_string("-ERR internal server error" CRLF),
    ngx_string("-ERR SSL certificate error" CRLF),
    ngx_string("-ERR No required SSL certificate" CRLF)
};


static ngx_mail_protocol_t  ngx_mail_plus_imap_protocol = {
    ngx_string("imap"),
    ngx_string("\x04imap"),
    { 143, 993, 0, 0 },
    NGX_MAIL_IMAP_PROTOCOL,

    ngx_mail_plus_imap_init_session,
    ngx_mail_plus_imap_init_protocol,
    ngx_mail_imap_parse_command,
    ngx_mail_plus_imap_auth_state,

    ngx_string("* BAD internal server error" CRLF),
    ngx_string("* BYE SSL certificate error" CRLF),
    ngx_string("* BYE No required SSL certificate" CRLF)
};


/* the most of a login a log line of the proxy shows, escaped */

#define NGX_MAIL_PLUS_PROXY_LOG_LOGIN  256


static ngx_str_t  ngx_mail_plus_proxy_ends[] = {
    ngx_string("client closed"),
    ngx_string("backend closed"),
    ngx_string("timed out"),
    ngx_string("error"),
    ngx_string("session limit"),
    ngx_string("quit before login")
};


static u_char  ngx_mail_plus_sasl_next[] = "+ " CRLF;
static u_char  ngx_mail_plus_sasl_username[] = "+ VXNlcm5hbWU6" CRLF;
static u_char  ngx_mail_plus_sasl_password[] = "+ UGFzc3dvcmQ6" CRLF;


static ngx_str_t  ngx_mail_plus_proxy_names[] = {
    ngx_string("imap"),
    ngx_string("pop3")
};


/*
 * the protocols' init_session: the session's context, its cleanup, the
 * per-client session limit, then the greeting (or the refusal)
 */

void
ngx_mail_plus_proxy_init_session(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t protocol, ngx_str_t *greeting, ngx_str_t *refusal,
    ngx_event_handler_pt init_protocol)
{
    ngx_int_t                  rc;
    ngx_mail_core_srv_conf_t  *cscf;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    rc = ngx_mail_plus_proxy_create_ctx(s, c, protocol);

    if (rc == NGX_ERROR) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    if (rc == NGX_DECLINED) {
        s->out = *refusal;
        s->quit = 1;

    } else {
        s->out = *greeting;
    }

    c->read->handler = init_protocol;

    ngx_add_timer(c->read, cscf->timeout);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_send(c->write);
}


static ngx_int_t
ngx_mail_plus_proxy_create_ctx(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t protocol)
{
    ngx_pool_cleanup_t          *cln;
    ngx_mail_plus_proxy_ctx_t   *ctx;
    ngx_mail_plus_proxy_conf_t  *pcf;

    pcf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_proxy_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_mail_plus_proxy_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_mail_plus_proxy_cleanup;
    cln->data = ctx;

    ctx->session = s;
    ctx->conf = pcf;
    ctx->protocol = protocol;
    ctx->start = ngx_current_msec;
    ctx->end = NGX_MAIL_PLUS_END_CLIENT;
    ngx_str_set(&ctx->user, "-");
    ngx_str_set(&ctx->backend, "-");

    ngx_mail_set_ctx(s, ctx, ngx_mail_plus_proxy_module);

    c->log->handler = ngx_mail_plus_proxy_log_error;

    if (pcf->client_sessions == 0) {
        return NGX_OK;
    }

    /* the client's network, as "router_client_prefix" sets it */

    ctx->client_key.data = ngx_pnalloc(c->pool,
                                       2 + NGX_MAIL_PLUS_CLIENT_KEY_LEN);
    if (ctx->client_key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->client_key.data, "c:", 2);

    ctx->client_key.len = 2 + ngx_mail_plus_client_key(
                                  ngx_mail_get_module_main_conf(s,
                                                        ngx_mail_plus_module),
                                  c->sockaddr, ctx->client_key.data + 2);

    switch (ngx_mail_plus_limit_acquire(&ctx->client_key,
                                        pcf->client_sessions, c->log))
    {
    case NGX_OK:
        ctx->client_limited = 1;
        return NGX_OK;

    case NGX_DONE:
        return NGX_OK;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "too many sessions from %V", &c->addr_text);
        ctx->end = NGX_MAIL_PLUS_END_LIMIT;
        return NGX_DECLINED;

    default:
        return NGX_ERROR;
    }
}


/*
 * the protocols' init_protocol, also after STARTTLS: the command buffer;
 * NGX_ERROR when the session has gone
 */

ngx_int_t
ngx_mail_plus_proxy_init_protocol(ngx_event_t *rev, size_t size)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    c->log->action = "in auth state";

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return NGX_ERROR;
    }

    if (s->buffer == NULL) {
        if (ngx_array_init(&s->args, c->pool, 2, sizeof(ngx_str_t))
            == NGX_ERROR)
        {
            ngx_mail_session_internal_server_error(s);
            return NGX_ERROR;
        }

        s->buffer = ngx_create_temp_buf(c->pool, size);
        if (s->buffer == NULL) {
            ngx_mail_session_internal_server_error(s);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * the start of the protocols' auth_state: NGX_AGAIN or NGX_ERROR when
 * there is nothing to do now, else what ngx_mail_read_command() returned
 */

ngx_int_t
ngx_mail_plus_proxy_read_command(ngx_event_t *rev)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return NGX_ERROR;
    }

    if (s->out.len) {

        /* the reply before is still being sent */

        s->blocked = 1;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    s->blocked = 0;

    rc = ngx_mail_read_command(s, c);

    if (rc == NGX_AGAIN) {
        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_session_internal_server_error(s);
            return NGX_ERROR;
        }
    }

    return rc;
}


/* which of a protocol's capability lists the client gets now */

ngx_str_t *
ngx_mail_plus_proxy_capability(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *plain, ngx_str_t *starttls, ngx_str_t *starttls_only)
{
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t  *sslcf;

    if (c->ssl == NULL) {
        sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

        if (sslcf->starttls == NGX_MAIL_STARTTLS_ON) {
            return starttls;
        }

        if (sslcf->starttls == NGX_MAIL_STARTTLS_ONLY) {
            return starttls_only;
        }
    }
#endif

    return plain;
}


ngx_int_t
ngx_mail_plus_proxy_starttls(ngx_mail_session_t *s, ngx_connection_t *c)
{
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t  *sslcf;

    if (c->ssl == NULL) {
        sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);
        if (sslcf->starttls) {
            s->buffer->pos = s->buffer->start;
            s->buffer->last = s->buffer->start;
            c->read->handler = ngx_mail_starttls_handler;
            return NGX_OK;
        }
    }

#endif

    return NGX_MAIL_PARSE_INVALID_COMMAND;
}


/*
 * AUTH (POP3) and AUTHENTICATE (IMAP) with the stock SASL helpers: PLAIN
 * and LOGIN, with or without an initial response, and CRAM-MD5 when the
 * server's pop3_auth or imap_auth lists it; EXTERNAL needs what the
 * router does not keep.  NGX_DONE: credentials complete.
 */

ngx_int_t
ngx_mail_plus_proxy_sasl_start(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_sasl_t *sasl)
{
    ngx_int_t                  rc;
    ngx_mail_core_srv_conf_t  *cscf;

#if (NGX_MAIL_SSL)
    if (ngx_mail_starttls_only(s, c)) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }
#endif

    rc = ngx_mail_auth_parse(s, c);

    switch (rc) {

    case NGX_MAIL_AUTH_LOGIN:
        ngx_str_set(&s->out, ngx_mail_plus_sasl_username);
        s->mail_state = sasl->login_username;
        return NGX_OK;

    case NGX_MAIL_AUTH_LOGIN_USERNAME:
        ngx_str_set(&s->out, ngx_mail_plus_sasl_password);
        s->mail_state = sasl->login_password;
        return ngx_mail_auth_login_username(s, c, 1);

    case NGX_MAIL_AUTH_PLAIN:
        ngx_str_set(&s->out, ngx_mail_plus_sasl_next);
        s->mail_state = sasl->plain;
        return NGX_OK;

    case NGX_MAIL_AUTH_CRAM_MD5:

        if (ngx_mail_plus_proxy_auth_methods(s)
            & NGX_MAIL_AUTH_CRAM_MD5_ENABLED)
        {
            if (s->salt.data == NULL) {
                cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

                if (ngx_mail_salt(s, c, cscf) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            if (ngx_mail_auth_cram_md5_salt(s, c, "+ ", 2) != NGX_OK) {
                return NGX_ERROR;
            }

            s->mail_state = sasl->cram_md5;
            return NGX_OK;
        }

        /* fall through */

    case NGX_MAIL_AUTH_EXTERNAL:
        s->out = sasl->unsupported;
        s->state = 0;
        return NGX_OK;
    }

    return rc;
}


static ngx_uint_t
ngx_mail_plus_proxy_auth_methods(ngx_mail_session_t *s)
{
    ngx_mail_imap_srv_conf_t   *iscf;
    ngx_mail_pop3_srv_conf_t   *pscf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
        iscf = ngx_mail_get_module_srv_conf(s, ngx_mail_imap_module);
        return iscf->auth_methods;
    }

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    return pscf->auth_methods;
}


/* a line of the SASL exchange */

ngx_int_t
ngx_mail_plus_proxy_sasl_step(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_sasl_t *sasl)
{
    ngx_int_t  rc;

    if (s->mail_state == sasl->login_username) {
        rc = ngx_mail_auth_login_username(s, c, 0);

        ngx_str_set(&s->out, ngx_mail_plus_sasl_password);
        s->mail_state = sasl->login_password;

        return rc;
    }

    if (s->mail_state == sasl->login_password) {
        return ngx_mail_auth_login_password(s, c);
    }

    if (s->mail_state == sasl->plain) {
        return ngx_mail_auth_plain(s, c, 0);
    }

    if (s->mail_state == sasl->cram_md5) {
        return ngx_mail_auth_cram_md5(s, c);
    }

    return NGX_MAIL_PARSE_INVALID_COMMAND;
}


/* the client has given a login and a password: ask the router */

void
ngx_mail_plus_proxy_login(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_int_t                   rc;
    ngx_mail_plus_check_t      *check;
    ngx_mail_plus_main_conf_t  *mpcf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    c->log->action = "asking the router";

    s->login_attempt++;

    check = ngx_mail_plus_check_create(mpcf, c->log);
    if (check == NULL) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    ctx->check = check;
    check->handler = ngx_mail_plus_proxy_checked;
    check->data = s;

    if (ngx_mail_plus_check_set(check, ctx->protocol, &s->login, &s->passwd,
                                &c->addr_text)
        != NGX_OK)
    {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    /* APOP and CRAM-MD5: the password is the client's digest of the salt */

    if ((s->auth_method == NGX_MAIL_AUTH_APOP
         || s->auth_method == NGX_MAIL_AUTH_CRAM_MD5)
        && ngx_mail_plus_check_set_digest(check, s->auth_method, &s->salt)
           != NGX_OK)
    {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    s->auth_method = NGX_MAIL_AUTH_PLAIN;

    ngx_str_null(&s->passwd);

    /* the client is not read while the router and the backend work */

    c->read->handler = ngx_mail_plus_proxy_block;

    rc = ngx_mail_plus_check_start(check);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    ngx_mail_plus_proxy_answer(s);
}


static void
ngx_mail_plus_proxy_checked(ngx_mail_plus_check_t *check)
{
    ngx_mail_plus_proxy_answer(check->data);
}


static void
ngx_mail_plus_proxy_answer(ngx_mail_session_t *s)
{
    time_t                       delay;
    ngx_str_t                    text, login;
    ngx_connection_t            *c;
    ngx_mail_plus_route_t       *route;
    ngx_mail_plus_proxy_ctx_t   *ctx;
    u_char                       buf[NGX_MAIL_PLUS_PROXY_LOG_LOGIN];

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    route = &ctx->check->route;

    switch (route->status) {

    case NGX_MAIL_PLUS_ALLOW:

        /*
         * the client's buffer goes away after login; the log keeps this,
         * ctx->user escaped for log lines
         */

        text.len = s->login.len;
        text.data = ngx_pstrdup(c->pool, &s->login);
        if (text.data == NULL) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        s->login = text;

        if (ngx_mail_plus_text_log(c->pool, &s->login, &ctx->user)
            != NGX_OK)
        {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        if (ctx->conf->user_sessions) {

            ctx->user_key.len = 2 + route->key.len;
            ctx->user_key.data = ngx_pnalloc(c->pool, ctx->user_key.len);
            if (ctx->user_key.data == NULL) {
                ngx_mail_session_internal_server_error(s);
                return;
            }

            ngx_memcpy(ngx_cpymem(ctx->user_key.data, "u:", 2),
                       route->key.data, route->key.len);

            switch (ngx_mail_plus_limit_acquire(&ctx->user_key,
                                                ctx->conf->user_sessions,
                                                c->log))
            {
            case NGX_OK:
                ctx->user_limited = 1;
                break;

            case NGX_DONE:
                break;

            case NGX_BUSY:
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "too many sessions of \"%V\"", &ctx->user);

                ngx_mail_plus_check_free(ctx->check);
                ctx->check = NULL;

                if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
                    ngx_str_set(&text, "NO [LIMIT] Too many sessions.");

                } else {
                    ngx_str_set(&text, "-ERR [IN-USE] Too many sessions.");
                }

                ngx_mail_plus_proxy_reply(s, &text, 1);
                return;

            default:
                ngx_mail_session_internal_server_error(s);
                return;
            }
        }

        ngx_mail_plus_upstream_connect(s);
        return;

    case NGX_MAIL_PLUS_DENY:

        login.data = buf;
        login.len = ngx_mail_plus_text_log_write(buf, buf + sizeof(buf),
                                                 &s->login)
                    - buf;

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "login \"%V\" denied: %V", &login, &route->reason);

        /* the router's delay: it grows with the failures it counted */

        delay = route->delay;

        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;

        ctx->delay.handler = ngx_mail_plus_proxy_delayed;
        ctx->delay.data = s;
        ctx->delay.log = c->log;

        if (delay) {
            ngx_add_timer(&ctx->delay, (ngx_msec_t) delay * 1000);
            return;
        }

        ngx_mail_plus_proxy_delayed(&ctx->delay);
        return;

    default: /* NGX_MAIL_PLUS_TEMPFAIL */

        login.data = buf;
        login.len = ngx_mail_plus_text_log_write(buf, buf + sizeof(buf),
                                                 &s->login)
                    - buf;

        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "login \"%V\" failed temporarily: %V",
                      &login, &route->reason);

        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;

        if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
            ngx_str_set(&text,
                        "NO [UNAVAILABLE] Temporary authentication failure.");

        } else {
            ngx_str_set(&text,
                        "-ERR [SYS/TEMP] Temporary authentication failure.");
        }

        ngx_mail_plus_proxy_reply(s, &text, 1);
        return;
    }
}


static void
ngx_mail_plus_proxy_delayed(ngx_event_t *ev)
{
    ngx_str_t                   text;
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    s = ev->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
        ngx_str_set(&text, "NO [AUTHENTICATIONFAILED] Authentication failed.");

    } else {
        ngx_str_set(&text, "-ERR [AUTH] Authentication failed.");
    }

    ngx_mail_plus_proxy_reply(s, &text, 1);
}


/*
 * a reply to a login that did not lead to a relay; the dialogue goes on
 * where it was before the login (IMAP replies get the command's tag)
 */

void
ngx_mail_plus_proxy_reply(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_uint_t tagged)
{
    u_char                     *p;
    size_t                      len;
    ngx_connection_t           *c;
    ngx_mail_core_srv_conf_t   *cscf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    c->log->action = "in auth state";

    len = text->len + 2;

    if (ctx->protocol == NGX_MAIL_PLUS_IMAP && tagged) {
        len += s->tag.len ? s->tag.len : 2;
    }

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    s->out.data = p;

    if (ctx->protocol == NGX_MAIL_PLUS_IMAP && tagged) {
        if (s->tag.len) {
            p = ngx_cpymem(p, s->tag.data, s->tag.len);

        } else {
            p = ngx_cpymem(p, "* ", 2);
        }
    }

    p = ngx_cpymem(p, text->data, text->len);
    *p++ = CR; *p++ = LF;

    s->out.len = p - s->out.data;

    s->mail_state = 0;
    s->state = 0;
    s->args.nelts = 0;
    s->tag.len = 0;

    if (s->buffer->pos == s->buffer->last) {
        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;
    }

    s->blocked = (s->buffer->pos < s->buffer->last || c->read->ready);

    c->read->handler = cscf->protocol->auth_state;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_send(c->write);
}


/* the client is not read while the router or a backend is asked */

static void
ngx_mail_plus_proxy_block(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_TIMEOUT);
    }
}


void
ngx_mail_plus_proxy_finalize(ngx_mail_session_t *s, ngx_uint_t end)
{
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    ctx->end = end;

    ngx_mail_close_connection(s->connection);
}


/*
 * runs when the client connection's pool goes, whoever closed it (the
 * stock helpers close sessions themselves on errors): what the session
 * took is given back here, and its log line written
 */

static void
ngx_mail_plus_proxy_cleanup(void *data)
{
    ngx_mail_plus_proxy_ctx_t *ctx = data;

    ngx_msec_t              ms;
    ngx_connection_t       *c;
    ngx_mail_session_t     *s;
    ngx_mail_plus_stats_t  *stats;

    s = ctx->session;
    c = s->connection;

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->delay.timer_set) {
        ngx_del_timer(&ctx->delay);
    }

    ngx_mail_plus_upstream_close(ctx);
    ngx_mail_plus_relay_close(ctx);

    if (ctx->user_limited) {
        ngx_mail_plus_limit_release(&ctx->user_key);
    }

    if (ctx->client_limited) {
        ngx_mail_plus_limit_release(&ctx->client_key);
    }

    stats = ngx_mail_plus_zone_stats();

    if (ctx->logged_in && stats) {
        (void) ngx_atomic_fetch_add(&stats->active[ctx->protocol],
                                    (ngx_atomic_int_t) -1);
    }

    if (!ctx->logged_in && ctx->end == NGX_MAIL_PLUS_END_CLIENT && s->quit) {
        ctx->end = NGX_MAIL_PLUS_END_QUIT;
    }

    if (c->timedout) {
        ctx->end = NGX_MAIL_PLUS_END_TIMEOUT;
    }

    ms = ngx_current_msec - ctx->start;

    c->log->action = NULL;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "mail session: %V client=%V user=\"%V\" backend=%V "
                  "up=%O down=%O time=%M.%03Ms end=\"%V\"",
                  &ngx_mail_plus_proxy_names[ctx->protocol], &c->addr_text,
                  &ctx->user, &ctx->backend, ctx->up.bytes, ctx->down.bytes,
                  ms / 1000, ms % 1000, &ngx_mail_plus_proxy_ends[ctx->end]);
}


/*
 * every log line of a session ends as the stock mail log handler ends it
 * (", client: ..., server: ..."), with the login escaped: a client cannot
 * close its quotes, nor end the line and start one of its own
 */

static u_char *
ngx_mail_plus_proxy_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char              *p, *last;
    ngx_str_t            login;
    ngx_mail_session_t  *s;
    ngx_mail_log_ctx_t  *lctx;

    lctx = log->data;
    s = lctx->session;

    if (s == NULL || s->login.len == 0) {
        return ngx_mail_log_error(log, buf, len);
    }

    login = s->login;
    s->login.len = 0;

    p = ngx_mail_log_error(log, buf, len);

    s->login = login;

    last = buf + len;

    if (last - p < (ssize_t) sizeof(", login: \"\"") - 1) {
        return p;
    }

    p = ngx_cpymem(p, ", login: \"", sizeof(", login: \"") - 1);
    p = ngx_mail_plus_text_log_write(p, last - 1, &login);
    *p++ = '"';

    return p;
}


static void *
ngx_mail_plus_proxy_create_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_proxy_conf_t  *pcf;

    pcf = ngx_palloc(cf->pool, sizeof(ngx_mail_plus_proxy_conf_t));
    if (pcf == NULL) {
        return NULL;
    }

    pcf->enable = NGX_CONF_UNSET;
    pcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    pcf->login_timeout = NGX_CONF_UNSET_MSEC;
    pcf->timeout = NGX_CONF_UNSET_MSEC;
    pcf->buffer_size = NGX_CONF_UNSET_SIZE;
    pcf->user_sessions = NGX_CONF_UNSET_UINT;
    pcf->client_sessions = NGX_CONF_UNSET_UINT;

    return pcf;
}


static char *
ngx_mail_plus_proxy_merge_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_mail_plus_proxy_conf_t *prev = parent;
    ngx_mail_plus_proxy_conf_t *conf = child;

    ngx_uint_t                  inherited;
    ngx_mail_core_srv_conf_t   *cscf;
    ngx_mail_plus_main_conf_t  *mpcf;

    inherited = (conf->enable == NGX_CONF_UNSET);

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->login_timeout, prev->login_timeout,
                              30000);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 30 * 60000);
    ngx_conf_merge_size_value(conf->buffer_size, prev->buffer_size,
                              32768);
    ngx_conf_merge_uint_value(conf->user_sessions, prev->user_sessions, 0);
    ngx_conf_merge_uint_value(conf->client_sessions, prev->client_sessions,
                              0);

    if (conf->buffer_size < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_proxy_buffer\" must be at least 1k");
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);

    if (cscf->protocol == NULL) {

        /* the mail{} level: the servers decide */

        return NGX_CONF_OK;
    }

    mpcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_module);

    if (mpcf->pools.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_proxy\" needs a \"router_pool\"");
        return NGX_CONF_ERROR;
    }

    switch (cscf->protocol->type) {

    case NGX_MAIL_POP3_PROTOCOL:
        cscf->protocol = &ngx_mail_plus_pop3_protocol;
        break;

    case NGX_MAIL_IMAP_PROTOCOL:
        cscf->protocol = &ngx_mail_plus_imap_protocol;
        break;

    default:

        /* "router_proxy on" in mail{} leaves SMTP servers alone */

        if (inherited) {
            conf->enable = 0;
            return NGX_CONF_OK;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_proxy\" is for pop3 and imap servers, "
                      "not for the server in %s:%ui",
                      cscf->file_name, cscf->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
