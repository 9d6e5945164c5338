
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_dir_ldap.h"


/*
 * The LDAP source's filter templates: "%u" is the login, "%%" a percent
 * sign; everything else is the filter as written.  A template is checked
 * once, at configuration: one parenthesized filter, balanced, with valid
 * "\XX" escapes, no control character, and each "%u" in an assertion's
 * value (after its "="), not next to a quote (a filter has no quoting:
 * a template that looks quoted was written for something else).  The
 * login is written into the filter with every byte that could change
 * the filter's meaning escaped as "\XX" (RFC 4515): "*", "(", ")", "\",
 * NUL, any other control byte and any byte above 0x7e.
 */


#define ngx_mail_plus_ldap_escape(ch)                                         \
    ((ch) == '*' || (ch) == '(' || (ch) == ')' || (ch) == '\\'               \
     || (ch) < 0x20 || (ch) > 0x7e)


char *
ngx_mail_plus_dir_ldap_filter_check(ngx_str_t *tpl)
{
    u_char      ch, *p, *last;
    ngx_uint_t  depth, logins, value;

    if (tpl->len < 3 || tpl->len > 1024) {
        return "must be 3 to 1024 characters";
    }

    p = tpl->data;
    last = p + tpl->len;

    if (*p != '(' || last[-1] != ')') {
        return "must be one filter in parentheses";
    }

    depth = 0;
    logins = 0;
    value = 0;

    for ( /* void */ ; p < last; p++) {

        ch = *p;

        if (ch < 0x20 || ch == 0x7f) {
            return "has a control character";
        }

        switch (ch) {

        case '(':
            if (depth > 0 && value) {
                return "has \"(\" in a value, it must be written \\28";
            }

            if (p + 1 < last && p[1] == ')') {
                return "has an empty filter \"()\"";
            }

            depth++;
            value = 0;
            break;

        case ')':
            if (depth == 0) {
                return "is not balanced";
            }

            depth--;
            value = 0;

            if (depth == 0 && p + 1 != last) {
                return "must be one filter in parentheses";
            }

            break;

        case '=':
            value = 1;
            break;

        case '\\':
            if (last - p < 3
                || !((p[1] >= '0' && p[1] <= '9')
                     || ((p[1] | 0x20) >= 'a' && (p[1] | 0x20) <= 'f'))
                || !((p[2] >= '0' && p[2] <= '9')
                     || ((p[2] | 0x20) >= 'a' && (p[2] | 0x20) <= 'f')))
            {
                return "has \"\\\" not followed by two hex digits";
            }

            p += 2;
            break;

        case '%':
            if (p + 1 == last) {
                return "ends in \"%\"";
            }

            if (p[1] == '%') {
                p++;
                break;
            }

            if (p[1] != 'u') {
                return "has an unknown escape, only \"%u\" (the login) "
                       "and \"%%\" are known";
            }

            if (!value) {
                return "has \"%u\" outside an assertion's value";
            }

            if (p[-1] == '"' || p[-1] == '\''
                || (p + 2 < last && (p[2] == '"' || p[2] == '\'')))
            {
                return "has \"%u\" in quotes: a filter has no quoting, "
                       "the login is escaped";
            }

            logins++;
            p++;
            break;

        default:
            break;
        }
    }

    if (depth != 0) {
        return "is not balanced";
    }

    if (logins == 0) {
        return "has no \"%u\"";
    }

    return NULL;
}


size_t
ngx_mail_plus_dir_ldap_filter_len(ngx_str_t *tpl, ngx_str_t *login)
{
    size_t   len, escaped;
    u_char  *p, *last;

    escaped = 0;

    for (p = login->data, last = p + login->len; p < last; p++) {
        escaped += ngx_mail_plus_ldap_escape(*p) ? 3 : 1;
    }

    len = 0;

    for (p = tpl->data, last = p + tpl->len; p < last; p++) {

        if (*p == '%' && p + 1 < last) {
            len += (p[1] == 'u') ? escaped : 1;
            p++;
            continue;
        }

        len++;
    }

    return len;
}


u_char *
ngx_mail_plus_dir_ldap_filter(u_char *dst, ngx_str_t *tpl, ngx_str_t *login)
{
    u_char  *p, *last, *s, *end;

    static u_char  hex[] = "0123456789abcdef";

    for (p = tpl->data, last = p + tpl->len; p < last; p++) {

        if (*p != '%' || p + 1 == last) {
            *dst++ = *p;
            continue;
        }

        p++;

        if (*p != 'u') {
            *dst++ = *p;
            continue;
        }

        for (s = login->data, end = s + login->len; s < end; s++) {

            if (ngx_mail_plus_ldap_escape(*s)) {
                *dst++ = '\\';
                *dst++ = hex[*s >> 4];
                *dst++ = hex[*s & 0x0f];

            } else {
                *dst++ = *s;
            }
        }
    }

    return dst;
}
