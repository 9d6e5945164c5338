
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the users file: the input is a file, cut into
 * lines as the loader cuts it, each line parsed by
 * ngx_mail_plus_users_parse_line().
 *
 * Both layouts: "login:password[:target]" and Dovecot's passwd-file line
 * with its extra fields.
 *
 * Oracles: an accepted line gives a login of 1 to 255 characters, in lower
 * case, with no space, control character or colon; a password with a known
 * scheme (or none, empty), NUL-terminated after its length; a target
 * inside the line, or extra fields only without one; extra field values
 * inside the line, without control characters, "%" or quotes.
 *
 * sources: router/ngx_mail_plus_users_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"

#include <assert.h>
#include <stdlib.h>


static void
check_value(ngx_str_t *value, u_char *line, size_t len)
{
    size_t  i;

    if (value->len == 0) {
        return;
    }

    assert(value->data >= line && value->data + value->len <= line + len);
    assert(value->len <= 255);

    for (i = 0; i < value->len; i++) {
        assert(value->data[i] >= 0x20 && value->data[i] != 0x7f);
        assert(value->data[i] != ' ' && value->data[i] != '%'
               && value->data[i] != '"');
    }
}


/* ngx_mail_plus_text.c's, which needs more of the core than the shim has */

ngx_uint_t
ngx_mail_plus_text_has_ctl(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                         *err;
    u_char                       *buf, *p, *last, *eol, *line;
    size_t                        i, len;
    ngx_int_t                     rc;
    ngx_str_t                     target;
    ngx_pool_t                   *pool;
    ngx_mail_plus_user_t          user;
    ngx_mail_plus_user_fields_t   fields;

    pool = ngx_create_pool(1024, NULL);
    assert(pool != NULL);

    buf = ngx_pnalloc(pool, size + 1);
    assert(buf != NULL);
    ngx_memcpy(buf, data, size);

    last = buf + size;

    for (p = buf; p < last; p = eol + 1) {

        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            eol = last;
        }

        /* the line in memory of its own: a read past it is seen */

        line = ngx_pnalloc(pool, eol - p);
        assert(line != NULL);
        ngx_memcpy(line, p, eol - p);

        ngx_memzero(&user, sizeof(ngx_mail_plus_user_t));
        err = NULL;

        len = eol - p;

        rc = ngx_mail_plus_users_parse_line(pool, line, line + len,
                                            &user, &target, &fields, &err);

        if (rc == NGX_ERROR) {
            assert(err == NULL || err[0] != '\0');
        }

        if (rc != NGX_OK) {
            continue;
        }

        assert(user.login.len >= 1 && user.login.len <= 255);

        for (i = 0; i < user.login.len; i++) {
            assert(user.login.data[i] > ' ' && user.login.data[i] != 0x7f);
            assert(user.login.data[i] != ':');
            assert(!(user.login.data[i] >= 'A' && user.login.data[i] <= 'Z'));
        }

        assert(user.scheme <= NGX_MAIL_PLUS_SCHEME_SSHA512);
        assert(user.scheme != NGX_MAIL_PLUS_SCHEME_NONE
               || user.password.len == 0);
        assert(user.password.data[user.password.len] == '\0');

        if (target.len) {
            assert(target.data >= line
                   && target.data + target.len <= line + len);
            assert(fields.pool.len == 0 && fields.host.len == 0
                   && fields.login.len == 0 && fields.port == 0
                   && !fields.nologin && !fields.nopassword);
        }

        check_value(&fields.pool, line, len);
        check_value(&fields.host, line, len);
        check_value(&fields.login, line, len);
        check_value(&fields.reason, line, len);

        assert(!fields.destuser || fields.login.len);
    }

    ngx_destroy_pool(pool);

    return 0;
}
