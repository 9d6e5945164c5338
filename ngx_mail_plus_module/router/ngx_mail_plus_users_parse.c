
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"


/*
 * A line of the users file, in one of two layouts:
 *
 *   login:password[:target]              (three fields at most)
 *   user:password:uid:gid:gecos:home:shell:extra_fields   (Dovecot's)
 *
 * The password carries its scheme ("{SHA512-CRYPT}$6$...", "{SSHA}...",
 * "{SSHA512}...", "{PLAIN}secret" or a bare "$6$..." crypt string); the
 * optional target
 * names a pool or a server (the loader, ngx_mail_plus_users.c, looks it
 * up).  A line of more than three fields is Dovecot's passwd-file line:
 * uid, gid, gecos, home and shell are not read, the password may be empty
 * (no password matches it), and the extra fields, space-separated "key" or
 * "key=value" after the seventh colon, are read by their Dovecot names
 * with ngx_mail_plus_user_field().  Blank lines and lines starting with
 * "#" are skipped.  Nothing here but buffers in and a user out, so that
 * fuzz/users_file runs exactly this code.
 */


#define NGX_MAIL_PLUS_LOGIN_MAX  255


typedef struct {
    ngx_str_t                   name;      /* "{NAME}" */
    ngx_uint_t                  scheme;
    char                       *prefix;    /* a crypt string's "$id$" */
} ngx_mail_plus_scheme_t;


static ngx_int_t ngx_mail_plus_users_parse_dovecot(ngx_pool_t *pool,
    u_char *p, u_char *end, ngx_mail_plus_user_t *user,
    ngx_mail_plus_user_fields_t *fields, char **err);
static ngx_int_t ngx_mail_plus_users_parse_extra(ngx_pool_t *pool,
    u_char *p, u_char *end, ngx_mail_plus_user_fields_t *fields, char **err);
static ngx_int_t ngx_mail_plus_users_extra_error(ngx_pool_t *pool,
    char *what, ngx_str_t *key, char **err);
static ngx_int_t ngx_mail_plus_users_digest(ngx_pool_t *pool, ngx_str_t *s,
    size_t len, ngx_uint_t salted, ngx_str_t *decoded);
static ngx_int_t ngx_mail_plus_crypt_valid(ngx_str_t *value);


static ngx_mail_plus_scheme_t  ngx_mail_plus_schemes[] = {
    { ngx_string("{PLAIN}"), NGX_MAIL_PLUS_SCHEME_PLAIN, NULL },
    { ngx_string("{CLEAR}"), NGX_MAIL_PLUS_SCHEME_PLAIN, NULL },
    { ngx_string("{CLEARTEXT}"), NGX_MAIL_PLUS_SCHEME_PLAIN, NULL },
    { ngx_string("{SHA}"), NGX_MAIL_PLUS_SCHEME_SHA, NULL },
    { ngx_string("{SSHA}"), NGX_MAIL_PLUS_SCHEME_SSHA, NULL },
    { ngx_string("{SHA256}"), NGX_MAIL_PLUS_SCHEME_SHA256, NULL },
    { ngx_string("{SHA512}"), NGX_MAIL_PLUS_SCHEME_SHA512, NULL },
    { ngx_string("{SSHA256}"), NGX_MAIL_PLUS_SCHEME_SSHA256, NULL },
    { ngx_string("{SSHA512}"), NGX_MAIL_PLUS_SCHEME_SSHA512, NULL },
    { ngx_string("{SHA512-CRYPT}"), NGX_MAIL_PLUS_SCHEME_CRYPT, "$6$" },
    { ngx_string("{SHA256-CRYPT}"), NGX_MAIL_PLUS_SCHEME_CRYPT, "$5$" },
    { ngx_string("{BLF-CRYPT}"), NGX_MAIL_PLUS_SCHEME_CRYPT, "$2" },
    { ngx_string("{MD5-CRYPT}"), NGX_MAIL_PLUS_SCHEME_CRYPT, "$1$" },
    { ngx_string("{CRYPT}"), NGX_MAIL_PLUS_SCHEME_CRYPT, "$" },
    { ngx_null_string, 0, NULL }
};


/* the extra fields we use: no Dovecot variables, no quotes in them */

static ngx_str_t  ngx_mail_plus_users_used[] = {
    ngx_string("pool"),
    ngx_string("host"),
    ngx_string("port"),
    ngx_string("user"),
    ngx_string("destuser"),
    ngx_string("reason"),
    ngx_null_string
};


/*
 * one line, without its LF: NGX_OK (the user set, *target its target or
 * empty, *fields its extra fields), NGX_DECLINED for a blank line or a
 * comment, NGX_ERROR with *err (or without, when memory ran out)
 */

ngx_int_t
ngx_mail_plus_users_parse_line(ngx_pool_t *pool, u_char *start, u_char *end,
    ngx_mail_plus_user_t *user, ngx_str_t *target,
    ngx_mail_plus_user_fields_t *fields, char **err)
{
    u_char     *p, *colon, *next;
    ngx_int_t   rc;
    ngx_str_t   login, password;

    ngx_memzero(fields, sizeof(ngx_mail_plus_user_fields_t));

    target->len = 0;
    target->data = NULL;

    if (end > start && end[-1] == CR) {
        end--;
    }

    while (start < end && (*start == ' ' || *start == '\t')) {
        start++;
    }

    if (start == end || *start == '#') {
        return NGX_DECLINED;
    }

    colon = ngx_strlchr(start, end, ':');
    if (colon == NULL || colon == start) {
        *err = "no \"login:password\"";
        return NGX_ERROR;
    }

    login.data = start;
    login.len = colon - start;

    if (login.len > NGX_MAIL_PLUS_LOGIN_MAX) {
        *err = "too long login";
        return NGX_ERROR;
    }

    for (p = login.data; p < colon; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            *err = "invalid character in login";
            return NGX_ERROR;
        }
    }

    password.data = colon + 1;
    password.len = end - password.data;

    next = ngx_strlchr(password.data, end, ':');

    if (next && ngx_strlchr(next + 1, end, ':')) {

        /* more than three fields: Dovecot's passwd-file line */

        rc = ngx_mail_plus_users_parse_dovecot(pool, password.data, end,
                                               user, fields, err);

    } else {

        /* "login:password[:target]" */

        if (next) {
            password.len = next - password.data;
            target->data = next + 1;
            target->len = end - target->data;
        }

        rc = ngx_mail_plus_users_password(pool, user, &password, err);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    user->login.len = login.len;
    user->login.data = ngx_pnalloc(pool, login.len);
    if (user->login.data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(user->login.data, login.data, login.len);

    return NGX_OK;
}


/*
 * "password:uid:gid:gecos:home:shell:extra_fields" of a passwd-file line:
 * uid to shell are skipped whatever they hold; an empty password is kept
 * as NGX_MAIL_PLUS_SCHEME_NONE, which no password matches
 */

static ngx_int_t
ngx_mail_plus_users_parse_dovecot(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_mail_plus_user_t *user, ngx_mail_plus_user_fields_t *fields,
    char **err)
{
    u_char      *colon;
    ngx_str_t    password;
    ngx_uint_t   n;

    colon = ngx_strlchr(p, end, ':');

    password.data = p;
    password.len = colon - p;

    if (password.len == 0) {
        user->scheme = NGX_MAIL_PLUS_SCHEME_NONE;
        user->password.data = (u_char *) "";
        user->password.len = 0;

    } else if (ngx_mail_plus_users_password(pool, user, &password, err)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the extra fields follow the seventh colon of the line */

    for (n = 0; n < 5 && colon; n++) {
        p = colon + 1;
        colon = ngx_strlchr(p, end, ':');
    }

    if (colon == NULL) {
        return NGX_OK;
    }

    p = colon + 1;

    if (p < end && *p == ':') {

        /*
         * Dovecot's older layout: an empty field, then a mail location
         * for its userdb; nothing of ours
         */

        return NGX_OK;
    }

    return ngx_mail_plus_users_parse_extra(pool, p, end, fields, err);
}


/*
 * space-separated "key" and "key=value" fields, as Dovecot reads them: no
 * quoting, no escapes, a value has no space; Dovecot expands "%" variables
 * in them, which we cannot do, so a value we use with a "%" or a quote
 * is refused rather than read otherwise than Dovecot does
 */

static ngx_int_t
ngx_mail_plus_users_parse_extra(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_mail_plus_user_fields_t *fields, char **err)
{
    u_char     *field, *eq;
    ngx_str_t   key, value, *used;

    while (p < end) {

        if (*p == ' ') {
            p++;
            continue;
        }

        field = p;

        while (p < end && *p != ' ') {
            p++;
        }

        eq = ngx_strlchr(field, p, '=');

        key.data = field;
        key.len = (eq ? eq : p) - field;

        value.data = eq ? eq + 1 : p;
        value.len = p - value.data;

        if (key.len == 0) {
            *err = "extra field without a name";
            return NGX_ERROR;
        }

        if (ngx_mail_plus_text_has_ctl(&key)) {
            *err = "control character in an extra field";
            return NGX_ERROR;
        }

        for (used = ngx_mail_plus_users_used; used->len; used++) {
            if (used->len == key.len
                && ngx_strncasecmp(used->data, key.data, key.len) == 0
                && (ngx_strlchr(value.data, p, '%')
                    || ngx_strlchr(value.data, p, '"')))
            {
                return ngx_mail_plus_users_extra_error(pool,
                           "variable or quote in the value of extra field",
                           &key, err);
            }
        }

        if (ngx_mail_plus_user_field(fields, &key, &value) != NGX_OK) {
            return ngx_mail_plus_users_extra_error(pool,
                                          "invalid value of extra field",
                                          &key, err);
        }
    }

    return NGX_OK;
}


/* "WHAT "KEY"" in *err: the key has no control character */

static ngx_int_t
ngx_mail_plus_users_extra_error(ngx_pool_t *pool, char *what, ngx_str_t *key,
    char **err)
{
    u_char  *p, *msg;
    size_t   len;

    len = ngx_min(key->len, 64);

    msg = ngx_pnalloc(pool, ngx_strlen(what) + sizeof(" \"\"") + len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(msg, what, ngx_strlen(what));
    p = ngx_cpymem(p, " \"", 2);
    p = ngx_cpymem(p, key->data, len);
    *p++ = '"';
    *p = '\0';

    *err = (char *) msg;

    return NGX_ERROR;
}


/*
 * a password as stored, with its scheme: of the users file, or as a
 * directory gave it
 */

ngx_int_t
ngx_mail_plus_users_password(ngx_pool_t *pool, ngx_mail_plus_user_t *user,
    ngx_str_t *value, char **err)
{
    u_char                  *p, *prefix;
    size_t                   len, n;
    ngx_int_t                rc;
    ngx_str_t                s, decoded;
    ngx_uint_t               i, salted;
    ngx_mail_plus_scheme_t  *scheme;

    s = *value;
    scheme = NULL;
    prefix = NULL;

    if (s.len && s.data[0] == '{') {

        for (i = 0; ngx_mail_plus_schemes[i].name.len; i++) {
            if (s.len >= ngx_mail_plus_schemes[i].name.len
                && ngx_strncasecmp(s.data, ngx_mail_plus_schemes[i].name.data,
                                   ngx_mail_plus_schemes[i].name.len)
                   == 0)
            {
                scheme = &ngx_mail_plus_schemes[i];
                break;
            }
        }

        if (scheme == NULL) {
            *err = "unknown password scheme";
            return NGX_ERROR;
        }

        user->scheme = scheme->scheme;

        if (scheme->scheme != NGX_MAIL_PLUS_SCHEME_SHA
            && scheme->scheme != NGX_MAIL_PLUS_SCHEME_SSHA)
        {
            s.data += scheme->name.len;
            s.len -= scheme->name.len;
        }

    } else if (s.len && s.data[0] == '$') {
        user->scheme = NGX_MAIL_PLUS_SCHEME_CRYPT;

    } else {
        *err = "password without a scheme";
        return NGX_ERROR;
    }

    switch (user->scheme) {

    case NGX_MAIL_PLUS_SCHEME_SHA:
    case NGX_MAIL_PLUS_SCHEME_SSHA:

        s.data += scheme->name.len;
        s.len -= scheme->name.len;

        salted = (user->scheme == NGX_MAIL_PLUS_SCHEME_SSHA);

        rc = ngx_mail_plus_users_digest(pool, &s, 20, salted, &decoded);
        if (rc != NGX_OK) {
            *err = (rc == NGX_DECLINED) ? "invalid SHA1 hash" : NULL;
            return NGX_ERROR;
        }

        /* ngx_crypt() takes the hash with its scheme, in upper case */

        prefix = (user->scheme == NGX_MAIL_PLUS_SCHEME_SHA)
                 ? (u_char *) "{SHA}" : (u_char *) "{SSHA}";
        break;

    case NGX_MAIL_PLUS_SCHEME_SHA256:
    case NGX_MAIL_PLUS_SCHEME_SHA512:
    case NGX_MAIL_PLUS_SCHEME_SSHA256:
    case NGX_MAIL_PLUS_SCHEME_SSHA512:

        /* kept decoded: the digest, then the salt if any */

        n = (user->scheme == NGX_MAIL_PLUS_SCHEME_SHA256
             || user->scheme == NGX_MAIL_PLUS_SCHEME_SSHA256) ? 32 : 64;

        salted = (user->scheme == NGX_MAIL_PLUS_SCHEME_SSHA256
                  || user->scheme == NGX_MAIL_PLUS_SCHEME_SSHA512);

        rc = ngx_mail_plus_users_digest(pool, &s, n, salted, &user->password);
        if (rc != NGX_OK) {
            *err = (rc == NGX_DECLINED) ? "invalid SHA-2 hash" : NULL;
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_MAIL_PLUS_SCHEME_CRYPT:

        /* the string may be shorter than the prefix: no read past it */

        if (scheme
            && (s.len < ngx_strlen(scheme->prefix)
                || ngx_strncmp(s.data, scheme->prefix,
                               ngx_strlen(scheme->prefix))
                   != 0))
        {
            *err = "crypt string does not match the password scheme";
            return NGX_ERROR;
        }

        if (ngx_mail_plus_crypt_valid(&s) != NGX_OK) {
            *err = "invalid crypt string";
            return NGX_ERROR;
        }

        break;

    default: /* NGX_MAIL_PLUS_SCHEME_PLAIN */
        break;
    }

    /* NUL-terminated, as crypt() and ngx_crypt() want it */

    len = prefix ? ngx_strlen(prefix) : 0;

    p = ngx_pnalloc(pool, len + s.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    user->password.data = p;
    user->password.len = len + s.len;

    if (prefix) {
        p = ngx_cpymem(p, prefix, len);
    }

    p = ngx_cpymem(p, s.data, s.len);
    *p = '\0';

    return NGX_OK;
}


/*
 * the base64 of a digest of "len" bytes, then of a salt if "salted":
 * NGX_OK with the bytes, NUL-terminated, in *decoded; NGX_DECLINED
 */

static ngx_int_t
ngx_mail_plus_users_digest(ngx_pool_t *pool, ngx_str_t *s, size_t len,
    ngx_uint_t salted, ngx_str_t *decoded)
{
    decoded->len = ngx_base64_decoded_length(s->len);
    decoded->data = ngx_pnalloc(pool, decoded->len + 1);
    if (decoded->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(decoded, s) != NGX_OK
        || (salted ? decoded->len <= len : decoded->len != len))
    {
        return NGX_DECLINED;
    }

    decoded->data[decoded->len] = '\0';

    return NGX_OK;
}


/*
 * "$id$[param$]salt$hash": every part of the crypt alphabet, the hash of
 * the length its scheme gives (0 where the scheme is not known here)
 */

static ngx_int_t
ngx_mail_plus_crypt_valid(ngx_str_t *value)
{
    u_char      *p, *last, *field;
    size_t       need;
    ngx_uint_t   fields;

    p = value->data;
    last = p + value->len;

    if (value->len < 4 || p[0] != '$') {
        return NGX_ERROR;
    }

    if (ngx_strncmp(p, "$6$", 3) == 0) {
        need = 86;

    } else if (ngx_strncmp(p, "$5$", 3) == 0) {
        need = 43;

    } else if (ngx_strncmp(p, "$1$", 3) == 0) {
        need = 22;

    } else if (p[1] == '2' && value->len == 60) {
        need = 53;   /* "$2y$NN$" then 22 salt and 31 hash characters */

    } else {
        need = 0;
    }

    fields = 0;
    field = p + 1;

    for (p++; p < last; p++) {

        if (*p == '$') {
            if (p == field) {
                return NGX_ERROR;
            }

            fields++;
            field = p + 1;
            continue;
        }

        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '/'
              || *p == '=' || *p == ',' || *p == '-'))
        {
            return NGX_ERROR;
        }
    }

    if (fields < 2 || field == last) {
        return NGX_ERROR;
    }

    if (need && (size_t) (last - field) != need) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * an extra field of a user, by Dovecot's name: NGX_OK (a field we do not
 * use is skipped), NGX_DECLINED for a value that cannot be right
 */

ngx_int_t
ngx_mail_plus_user_field(ngx_mail_plus_user_fields_t *fields, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_int_t   n;
    ngx_uint_t  yes;

    if (ngx_mail_plus_text_has_ctl(value) || value->len > 255) {
        return NGX_DECLINED;
    }

    yes = !(value->len == 1 && (value->data[0] == 'n' || value->data[0] == 'N'))
          && !(value->len == 2 && ngx_strncasecmp(value->data, (u_char *) "no",
                                                  2) == 0);

#define ngx_mail_plus_key_is(name)                                            \
    (key->len == sizeof(name) - 1                                             \
     && ngx_strncasecmp(key->data, (u_char *) name, sizeof(name) - 1) == 0)

    if (ngx_mail_plus_key_is("pool")) {
        fields->pool = *value;

    } else if (ngx_mail_plus_key_is("host")) {
        if (value->len == 0) {
            return NGX_DECLINED;
        }

        fields->host = *value;

    } else if (ngx_mail_plus_key_is("port")) {
        n = ngx_atoi(value->data, value->len);
        if (n < 1 || n > 65535) {
            return NGX_DECLINED;
        }

        fields->port = (in_port_t) n;

    } else if (ngx_mail_plus_key_is("destuser")) {
        if (value->len == 0) {
            return NGX_DECLINED;
        }

        fields->login = *value;
        fields->destuser = 1;

    } else if (ngx_mail_plus_key_is("user")) {
        if (value->len == 0) {
            return NGX_DECLINED;
        }

        if (!fields->destuser) {
            fields->login = *value;
        }

    } else if (ngx_mail_plus_key_is("reason")) {
        fields->reason = *value;

    } else if (ngx_mail_plus_key_is("nologin")) {
        fields->nologin = yes;

    } else if (ngx_mail_plus_key_is("proxy")
               || ngx_mail_plus_key_is("proxy_maybe"))
    {
        fields->proxy = yes;

    } else if (ngx_mail_plus_key_is("nopassword")) {
        fields->nopassword = yes;
    }

#undef ngx_mail_plus_key_is

    return NGX_OK;
}
