
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The IMAP dialogue before login, in a "router_proxy on" server: the
 * stock parser (LOGIN with quoted strings and literals, LITERAL+) and
 * SASL helpers, the stock imap_* settings, the router instead of
 * auth_http.  ID, which the stock parser does not know, is answered here
 * (RFC 2971): the client's fields are not kept.
 */


static ngx_int_t ngx_mail_plus_imap_login(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_imap_capability(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_uint_t ngx_mail_plus_imap_is_id(ngx_mail_session_t *s);


static ngx_str_t  imap_greeting = ngx_string("* OK IMAP4 ready" CRLF);
static u_char  imap_star[] = "* ";
static u_char  imap_ok[] = "OK completed" CRLF;
static u_char  imap_next[] = "+ OK" CRLF;
static u_char  imap_bye[] = "* BYE" CRLF;
static u_char  imap_id[] = "* ID NIL" CRLF;
static u_char  imap_invalid_command[] = "BAD invalid command" CRLF;
static ngx_mail_plus_sasl_t  imap_sasl = {
    ngx_imap_auth_login_username,
    ngx_imap_auth_login_password,
    ngx_imap_auth_plain,
    ngx_imap_auth_cram_md5,
    ngx_string("NO authentication mechanism not supported" CRLF)
};
static ngx_str_t  imap_limit =
    ngx_string("* BYE [UNAVAILABLE] Too many sessions." CRLF);


void
ngx_mail_plus_imap_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_plus_proxy_init_session(s, c, NGX_MAIL_PLUS_IMAP,
                                     &imap_greeting, &imap_limit,
                                     ngx_mail_plus_imap_init_protocol);
}


void
ngx_mail_plus_imap_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_imap_srv_conf_t  *iscf;

    c = rev->data;
    s = c->data;

    iscf = ngx_mail_get_module_srv_conf(s, ngx_mail_imap_module);

    if (ngx_mail_plus_proxy_init_protocol(rev, iscf->client_buffer_size)
        != NGX_OK)
    {
        return;
    }

    s->mail_state = ngx_imap_start;
    c->read->handler = ngx_mail_plus_imap_auth_state;

    ngx_mail_plus_imap_auth_state(rev);
}


void
ngx_mail_plus_imap_auth_state(ngx_event_t *rev)
{
    u_char              *p;
    ngx_int_t            rc;
    ngx_uint_t           tag, quit;
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    if (s->state == 0) {
        s->cmd_start = NULL;
    }

    quit = s->quit;

    rc = ngx_mail_plus_proxy_read_command(rev);

    if (rc == NGX_AGAIN || rc == NGX_ERROR) {
        return;
    }

    tag = 1;
    s->text.len = 0;
    ngx_str_set(&s->out, imap_ok);

    if (rc == NGX_MAIL_PARSE_INVALID_COMMAND
        && s->mail_state == ngx_imap_start
        && ngx_mail_plus_imap_is_id(s))
    {
        /* not an error: the stock parser does not know ID */

        s->errors--;
        s->quit = quit;
        ngx_str_set(&s->text, imap_id);
        rc = NGX_OK;

    } else if (rc == NGX_OK) {

        switch (s->mail_state) {

        case ngx_imap_start:

            switch (s->command) {

            case NGX_IMAP_LOGIN:
                rc = ngx_mail_plus_imap_login(s, c);
                break;

            case NGX_IMAP_AUTHENTICATE:
                rc = ngx_mail_plus_proxy_sasl_start(s, c, &imap_sasl);
                tag = (rc != NGX_OK || s->mail_state == ngx_imap_start);
                break;

            case NGX_IMAP_CAPABILITY:
                rc = ngx_mail_plus_imap_capability(s, c);
                break;

            case NGX_IMAP_LOGOUT:
                s->quit = 1;
                ngx_str_set(&s->text, imap_bye);
                break;

            case NGX_IMAP_NOOP:
                break;

            case NGX_IMAP_STARTTLS:
                rc = ngx_mail_plus_proxy_starttls(s, c);
                break;

            default:
                rc = NGX_MAIL_PARSE_INVALID_COMMAND;
                break;
            }

            break;

        case ngx_imap_auth_login_username:
            tag = 0;

            /* fall through */

        default:
            rc = ngx_mail_plus_proxy_sasl_step(s, c, &imap_sasl);
            break;
        }

    } else if (rc == NGX_IMAP_NEXT) {
        tag = 0;
        ngx_str_set(&s->out, imap_next);
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
        s->state = 0;
        ngx_str_set(&s->out, imap_invalid_command);
        s->mail_state = ngx_imap_start;
        break;
    }

    if (tag) {
        if (s->tag.len == 0) {
            ngx_str_set(&s->tag, imap_star);
        }

        if (s->tagged_line.len < s->tag.len + s->text.len + s->out.len) {
            s->tagged_line.len = s->tag.len + s->text.len + s->out.len;
            s->tagged_line.data = ngx_pnalloc(c->pool, s->tagged_line.len);
            if (s->tagged_line.data == NULL) {
                ngx_mail_close_connection(c);
                return;
            }
        }

        p = s->tagged_line.data;

        if (s->text.len) {
            p = ngx_cpymem(p, s->text.data, s->text.len);
        }

        p = ngx_cpymem(p, s->tag.data, s->tag.len);
        ngx_memcpy(p, s->out.data, s->out.len);

        s->out.len = s->text.len + s->tag.len + s->out.len;
        s->out.data = s->tagged_line.data;
    }

    if (rc != NGX_IMAP_NEXT) {
        s->args.nelts = 0;

        if (s->state) {
            /* preserve tag */
            s->arg_start = s->buffer->pos;

        } else {
            if (s->buffer->pos == s->buffer->last) {
                s->buffer->pos = s->buffer->start;
                s->buffer->last = s->buffer->start;
            }

            s->tag.len = 0;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    ngx_mail_send(c->write);
}


static ngx_int_t
ngx_mail_plus_imap_login(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_str_t  *arg;

#if (NGX_MAIL_SSL)
    if (ngx_mail_starttls_only(s, c)) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }
#endif

    arg = s->args.elts;

    if (s->args.nelts != 2 || arg[0].len == 0) {
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    /* the router copies them; the buffer is not reused before that */

    s->login = arg[0];
    s->passwd = arg[1];

    return NGX_DONE;
}


static ngx_int_t
ngx_mail_plus_imap_capability(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_imap_srv_conf_t  *iscf;

    iscf = ngx_mail_get_module_srv_conf(s, ngx_mail_imap_module);

    s->text = *ngx_mail_plus_proxy_capability(s, c, &iscf->capability,
                                             &iscf->starttls_capability,
                                             &iscf->starttls_only_capability);

    return NGX_OK;
}


/* the line the stock parser refused was a tagged "ID ..." */

static ngx_uint_t
ngx_mail_plus_imap_is_id(ngx_mail_session_t *s)
{
    u_char  *p;

    p = s->cmd_start;

    if (p == NULL || s->tag.len == 0
        || p < s->buffer->start || p + 3 > s->buffer->pos)
    {
        return 0;
    }

    return (p[0] == 'I' || p[0] == 'i')
           && (p[1] == 'D' || p[1] == 'd')
           && (p[2] == ' ' || p[2] == CR || p[2] == LF);
}
