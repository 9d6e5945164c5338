
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"


/*
 * What the two ways in of a message share, SMTP (ngx_mail_plus_smtp_data.c
 * and _envelope.c) and HTTP (ngx_http_mail_plus_submit_module.c): the
 * Received field, the Message-ID and Date fields of an authenticated
 * submission, and the DSN parameters of a recipient as the queue file
 * keeps them.
 */


/*
 * RFC 5321 4.4, with the protocol names of RFC 3848 ("ESMTPSA") or ours
 * ("HTTPA"); NGX_MAIL_PLUS_RECEIVED_LEN bytes at most beyond the lengths
 * of the names
 */

u_char *
ngx_mail_plus_received(u_char *p, ngx_mail_plus_received_t *rv)
{
    if (rv->helo.len) {
        p = ngx_sprintf(p, "Received: from %V ([%s%V])" CRLF,
                        &rv->helo, rv->ipv6 ? "IPv6:" : "", &rv->addr);

    } else {
        p = ngx_sprintf(p, "Received: from [%s%V]" CRLF,
                        rv->ipv6 ? "IPv6:" : "", &rv->addr);
    }

    p = ngx_sprintf(p, "\tby %V (nginx mail_plus) with %s id %s",
                    &rv->server_name, rv->with, rv->id);

    if (rv->rcpt) {
        p = ngx_sprintf(p, CRLF "\tfor <%V>", rv->rcpt);
    }

    p = ngx_cpymem(p, ";" CRLF "\t", 4);
    p = ngx_mail_plus_date(p, ngx_time());
    *p++ = CR; *p++ = LF;

    return p;
}


/*
 * an authenticated submission gets Message-ID and Date where it has none
 * (RFC 6409 8); NGX_MAIL_PLUS_FIELDS_LEN bytes at most beyond the server
 * name
 */

u_char *
ngx_mail_plus_submission_fields(u_char *p, ngx_mail_plus_smtp_data_t *d,
    u_char *id, ngx_str_t *server_name)
{
    if (!d->has_message_id) {
        p = ngx_sprintf(p, "Message-ID: <%s@%V>" CRLF, id, server_name);
    }

    if (!d->has_date) {
        p = ngx_cpymem(p, "Date: ", 6);
        p = ngx_mail_plus_date(p, ngx_time());
        *p++ = CR; *p++ = LF;
    }

    return p;
}


/* RFC 3461: "NOTIFY=... ORCPT=..." of a recipient, possibly empty */

ngx_int_t
ngx_mail_plus_dsn_value(ngx_pool_t *pool, ngx_mail_plus_smtp_path_t *path,
    ngx_str_t *dsn)
{
    dsn->len = 0;
    dsn->data = ngx_pnalloc(pool, sizeof("NOTIFY= ORCPT=") - 1
                                  + path->notify.len + path->orcpt.len);
    if (dsn->data == NULL) {
        return NGX_ERROR;
    }

    if (path->notify.len) {
        dsn->len = ngx_sprintf(dsn->data, "NOTIFY=%V", &path->notify)
                   - dsn->data;
    }

    if (path->orcpt.len) {
        dsn->len = ngx_sprintf(dsn->data + dsn->len, "%sORCPT=%V",
                               dsn->len ? " " : "", &path->orcpt)
                   - dsn->data;
    }

    return NGX_OK;
}
