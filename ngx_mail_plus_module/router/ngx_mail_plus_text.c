
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"



static char  *ngx_mail_plus_week[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
                                       "Fri", "Sat" };

static char  *ngx_mail_plus_months[] = { "Jan", "Feb", "Mar", "Apr", "May",
                                         "Jun", "Jul", "Aug", "Sep", "Oct",
                                         "Nov", "Dec" };


/*
 * Client text on its way to a backend command, a header or a log line.
 *
 * A login or a password may hold any byte a client chose to send.  None
 * with a control character (0x00-0x1f, 0x7f) is ever accepted, and none is
 * ever written to a log as it is: a log line gets the escaped form, where
 * every control character, "\" and the double quote are "\xNN", so that a
 * client can neither end the line, nor start a new one, nor close the
 * quotes around what it sent.
 */


ngx_uint_t
ngx_mail_plus_text_has_ctl(ngx_str_t *s)
{
    u_char  *p, *last;

    last = s->data + s->len;

    for (p = s->data; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return 1;
        }
    }

    return 0;
}


static ngx_inline ngx_uint_t
ngx_mail_plus_text_escaped(u_char ch)
{
    return ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\';
}


/* the escaped form for a log line; "dst" may be "src" when nothing changes */

ngx_int_t
ngx_mail_plus_text_log(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char  *p, *q, *last;
    size_t   n;

    static u_char  hex[] = "0123456789abcdef";

    last = src->data + src->len;
    n = 0;

    for (p = src->data; p < last; p++) {
        if (ngx_mail_plus_text_escaped(*p)) {
            n++;
        }
    }

    if (n == 0) {
        *dst = *src;
        return NGX_OK;
    }

    q = ngx_pnalloc(pool, src->len + n * (sizeof("\\xNN") - 2));
    if (q == NULL) {
        return NGX_ERROR;
    }

    dst->data = q;

    for (p = src->data; p < last; p++) {

        if (!ngx_mail_plus_text_escaped(*p)) {
            *q++ = *p;
            continue;
        }

        *q++ = '\\';
        *q++ = 'x';
        *q++ = hex[*p >> 4];
        *q++ = hex[*p & 0xf];
    }

    dst->len = q - dst->data;

    return NGX_OK;
}


/*
 * the escaped form written into a buffer of a log line, from "p" up to
 * "last" at most and never cut inside an escape: the end of what it wrote
 */

u_char *
ngx_mail_plus_text_log_write(u_char *p, u_char *last, ngx_str_t *src)
{
    u_char  *s, *end;

    static u_char  hex[] = "0123456789abcdef";

    end = src->data + src->len;

    for (s = src->data; s < end; s++) {

        if (!ngx_mail_plus_text_escaped(*s)) {
            if (p == last) {
                break;
            }

            *p++ = *s;
            continue;
        }

        if (last - p < (ssize_t) (sizeof("\\xNN") - 1)) {
            break;
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[*s >> 4];
        *p++ = hex[*s & 0xf];
    }

    return p;
}


/* the date-time of RFC 5322 3.3, in UTC: "Mon, 30 Nov 2026 10:00:00 +0000" */

u_char *
ngx_mail_plus_date(u_char *p, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(p, "%s, %d %s %4d %02d:%02d:%02d +0000",
                       ngx_mail_plus_week[tm.ngx_tm_wday], tm.ngx_tm_mday,
                       ngx_mail_plus_months[tm.ngx_tm_mon - 1],
                       tm.ngx_tm_year, tm.ngx_tm_hour, tm.ngx_tm_min,
                       tm.ngx_tm_sec);
}
