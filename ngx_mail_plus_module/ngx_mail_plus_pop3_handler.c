
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The POP3 dialogue before login, in a "router_proxy on" server: the
 * stock parser and SASL helpers, the stock pop3_* settings (capabilities,
 * pop3_auth), and the router instead of auth_http.  APOP and CRAM-MD5
 * (when pop3_auth lists them: the greeting then carries the salt) are
 * checked by the router against a cleartext password.
 */


static ngx_int_t ngx_mail_plus_pop3_user(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_pop3_pass(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_pop3_apop(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_pop3_login(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *login);
static ngx_int_t ngx_mail_plus_pop3_capa(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_pop3_auth(ngx_mail_session_t *s,
    ngx_connection_t *c);


static ngx_str_t  pop3_greeting = ngx_string("+OK POP3 ready" CRLF);
static u_char  pop3_ok[] = "+OK" CRLF;
static u_char  pop3_invalid_command[] = "-ERR invalid command" CRLF;
static ngx_mail_plus_sasl_t  pop3_sasl = {
    ngx_pop3_auth_login_username,
    ngx_pop3_auth_login_password,
    ngx_pop3_auth_plain,
    ngx_pop3_auth_cram_md5,
    ngx_string("-ERR authentication method not supported" CRLF)
};
static ngx_str_t  pop3_limit =
    ngx_string("-ERR [SYS/TEMP] Too many sessions." CRLF);


void
ngx_mail_plus_pop3_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char                    *p;
    ngx_str_t                  greeting;
    ngx_mail_core_srv_conf_t  *cscf;
    ngx_mail_pop3_srv_conf_t  *pscf;

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    greeting = pop3_greeting;

    if (pscf->auth_methods
        & (NGX_MAIL_AUTH_APOP_ENABLED|NGX_MAIL_AUTH_CRAM_MD5_ENABLED))
    {
        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

        if (ngx_mail_salt(s, c, cscf) != NGX_OK) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        /* "+OK POP3 ready <salt>" */

        greeting.len = pop3_greeting.len - 1 + s->salt.len;
        greeting.data = ngx_pnalloc(c->pool, greeting.len);
        if (greeting.data == NULL) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        p = ngx_cpymem(greeting.data, pop3_greeting.data,
                       pop3_greeting.len - 2);
        *p++ = ' ';
        ngx_memcpy(p, s->salt.data, s->salt.len);
    }

    ngx_mail_plus_proxy_init_session(s, c, NGX_MAIL_PLUS_POP3,
                                     &greeting, &pop3_limit,
                                     ngx_mail_plus_pop3_init_protocol);
}


void
ngx_mail_plus_pop3_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    /* USER, PASS and AUTH lines */

    if (ngx_mail_plus_proxy_init_protocol(rev, 512) != NGX_OK) {
        return;
    }

    s->mail_state = ngx_pop3_start;
    c->read->handler = ngx_mail_plus_pop3_auth_state;

    ngx_mail_plus_pop3_auth_state(rev);
}


void
ngx_mail_plus_pop3_auth_state(ngx_event_t *rev)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    rc = ngx_mail_plus_proxy_read_command(rev);

    if (rc == NGX_AGAIN || rc == NGX_ERROR) {
        return;
    }

    ngx_str_set(&s->out, pop3_ok);

    if (rc == NGX_OK) {

        switch (s->mail_state) {

        case ngx_pop3_start:
        case ngx_pop3_user:

            switch (s->command) {

            case NGX_POP3_USER:
                rc = ngx_mail_plus_pop3_user(s, c);
                break;

            case NGX_POP3_PASS:
                if (s->mail_state != ngx_pop3_user) {
                    rc = NGX_MAIL_PARSE_INVALID_COMMAND;
                    break;
                }

                rc = ngx_mail_plus_pop3_pass(s, c);
                break;

            case NGX_POP3_CAPA:
                rc = ngx_mail_plus_pop3_capa(s, c);
                break;

            case NGX_POP3_APOP:
                rc = ngx_mail_plus_pop3_apop(s, c);
                break;

            case NGX_POP3_AUTH:
                rc = ngx_mail_plus_pop3_auth(s, c);
                break;

            case NGX_POP3_QUIT:
                s->quit = 1;
                break;

            case NGX_POP3_NOOP:
                break;

            case NGX_POP3_STLS:
                rc = ngx_mail_plus_proxy_starttls(s, c);
                break;

            default:
                rc = NGX_MAIL_PARSE_INVALID_COMMAND;
                break;
            }

            break;

        default:
            rc = ngx_mail_plus_proxy_sasl_step(s, c, &pop3_sasl);
            break;
        }
    }

    if (s->buffer->pos < s->buffer->last) {
        s->blocked = 1;
    }

    switch (rc) {

    case NGX_DONE:
        s->out.len = 0;
        ngx_mail_plus_proxy_login(s, c);
        return;

    case NGX_ERROR:
        ngx_mail_session_internal_server_error(s);
        return;

    case NGX_MAIL_PARSE_INVALID_COMMAND:
        s->mail_state = ngx_pop3_start;
        s->state = 0;

        ngx_str_set(&s->out, pop3_invalid_command);

        /* fall through */

    case NGX_OK:

        s->args.nelts = 0;

        if (s->buffer->pos == s->buffer->last) {
            s->buffer->pos = s->buffer->start;
            s->buffer->last = s->buffer->start;
        }

        if (s->state) {
            s->arg_start = s->buffer->pos;
        }

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        ngx_mail_send(c->write);
    }
}


static ngx_int_t
ngx_mail_plus_pop3_user(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_str_t  *arg;

#if (NGX_MAIL_SSL)
    if (ngx_mail_starttls_only(s, c)) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }
#endif

    if (s->args.nelts != 1) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    arg = s->args.elts;

    if (ngx_mail_plus_pop3_login(s, c, &arg[0]) != NGX_OK) {
        return NGX_ERROR;
    }

    s->mail_state = ngx_pop3_user;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_pop3_pass(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_str_t  *arg;

    if (s->args.nelts != 1) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    arg = s->args.elts;

    /* the router copies it; the buffer is not reused before that */

    s->passwd = arg[0];

    return NGX_DONE;
}


static ngx_int_t
ngx_mail_plus_pop3_apop(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_str_t                 *arg;
    ngx_mail_pop3_srv_conf_t  *pscf;

#if (NGX_MAIL_SSL)
    if (ngx_mail_starttls_only(s, c)) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }
#endif

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    if (!(pscf->auth_methods & NGX_MAIL_AUTH_APOP_ENABLED)
        || s->args.nelts != 2)
    {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    arg = s->args.elts;

    if (ngx_mail_plus_pop3_login(s, c, &arg[0]) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the digest: the router copies it */

    s->passwd = arg[1];
    s->auth_method = NGX_MAIL_AUTH_APOP;

    return NGX_DONE;
}


/* the login outlives the command buffer */

static ngx_int_t
ngx_mail_plus_pop3_login(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *login)
{
    s->login.data = ngx_pstrdup(c->pool, login);
    if (s->login.data == NULL && login->len) {
        return NGX_ERROR;
    }

    s->login.len = login->len;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_pop3_capa(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_pop3_srv_conf_t  *pscf;

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    s->out = *ngx_mail_plus_proxy_capability(s, c, &pscf->capability,
                                             &pscf->starttls_capability,
                                             &pscf->starttls_only_capability);

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_pop3_auth(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_pop3_srv_conf_t  *pscf;

    if (s->args.nelts == 0) {

#if (NGX_MAIL_SSL)
        if (ngx_mail_starttls_only(s, c)) {
            return NGX_MAIL_PARSE_INVALID_COMMAND;
        }
#endif

        pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

        s->out = pscf->auth_capability;
        s->state = 0;

        return NGX_OK;
    }

    return ngx_mail_plus_proxy_sasl_start(s, c, &pop3_sasl);
}
