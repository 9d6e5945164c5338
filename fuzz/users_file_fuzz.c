
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the users file: the input is a file, cut into
 * lines as the loader cuts it, each line parsed by
 * ngx_mail_plus_users_parse_line().
 *
 * Oracles: an accepted line gives a login of 1 to 255 characters, in lower
 * case, with no space, control character or colon; a password with a known
 * scheme, NUL-terminated after its length; a target inside the line.
 *
 * sources: router/ngx_mail_plus_users_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"

#include <assert.h>
#include <stdlib.h>
#include <strings.h>


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    return strncasecmp((char *) s1, (char *) s2, n);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  *err;
    u_char                *buf, *p, *last, *eol, *line;
    size_t                 i;
    ngx_int_t              rc;
    ngx_str_t              target;
    ngx_pool_t            *pool;
    ngx_mail_plus_user_t   user;

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

        rc = ngx_mail_plus_users_parse_line(pool, line, line + (eol - p),
                                            &user, &target, &err);

        if (rc != NGX_OK) {
            continue;
        }

        assert(user.login.len >= 1 && user.login.len <= 255);

        for (i = 0; i < user.login.len; i++) {
            assert(user.login.data[i] > ' ' && user.login.data[i] != 0x7f);
            assert(user.login.data[i] != ':');
            assert(!(user.login.data[i] >= 'A' && user.login.data[i] <= 'Z'));
        }

        assert(user.scheme >= NGX_MAIL_PLUS_SCHEME_PLAIN
               && user.scheme <= NGX_MAIL_PLUS_SCHEME_CRYPT);
        assert(user.password.data[user.password.len] == '\0');

        if (target.len) {
            assert(target.data >= line
                   && target.data + target.len <= line + (eol - p));
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
