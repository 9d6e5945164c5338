
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include <ngx_crypt.h>
#include <ngx_md5.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "ngx_mail_plus_router.h"


/*
 * The users file: one user a line, "login:password[:target]", where the
 * optional target is a pool name or the address of a pool's server, or
 * Dovecot's passwd-file line, whose extra fields may name a pool, a host,
 * a port, the backend's login, "nologin" or "nopassword" (a line is parsed
 * by ngx_mail_plus_users_parse.c); and the password checks.
 */


static ngx_int_t ngx_mail_plus_users_read(ngx_conf_t *cf,
    ngx_mail_plus_main_conf_t *mpcf, ngx_str_t *file, ngx_str_t *text);
static ngx_int_t ngx_mail_plus_users_add_lines(ngx_conf_t *cf,
    ngx_mail_plus_main_conf_t *mpcf, ngx_str_t *file, ngx_str_t *text,
    ngx_hash_keys_arrays_t *keys, ngx_mail_plus_users_t *users, size_t *max);
static ngx_int_t ngx_mail_plus_users_hash(ngx_conf_t *cf,
    ngx_mail_plus_users_t *users, ngx_hash_keys_arrays_t *keys, size_t max);
static ngx_int_t ngx_mail_plus_users_target(ngx_conf_t *cf,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_user_t *user,
    ngx_str_t *name, char **err);
static ngx_int_t ngx_mail_plus_crypt_supported(ngx_conf_t *cf,
    ngx_str_t *value, ngx_array_t *checked);
static ngx_int_t ngx_mail_plus_password_sha2(ngx_mail_plus_user_t *user,
    ngx_str_t *password);


char *
ngx_mail_plus_users_load(ngx_conf_t *cf, ngx_mail_plus_main_conf_t *mpcf)
{
    size_t                   max;
    ngx_str_t                file, text;
    ngx_hash_keys_arrays_t   keys;
    ngx_mail_plus_users_t   *users;

    file = mpcf->users_file;

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_mail_plus_users_read(cf, mpcf, &file, &text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    users = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_users_t));
    if (users == NULL) {
        return NGX_CONF_ERROR;
    }

    keys.pool = cf->pool;
    keys.temp_pool = cf->temp_pool;

    if (ngx_hash_keys_array_init(&keys, NGX_HASH_LARGE) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_mail_plus_users_add_lines(cf, mpcf, &file, &text, &keys, users,
                                      &max)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_mail_plus_users_hash(cf, users, &keys, max) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, cf->log, 0,
                   "router: users file \"%V\": %ui users",
                   &file, users->nusers);

    mpcf->users = users;

    return NGX_CONF_OK;
}


/* the whole file, in the configuration's temporary pool */

static ngx_int_t
ngx_mail_plus_users_read(ngx_conf_t *cf, ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *file, ngx_str_t *text)
{
    u_char           *buf;
    size_t            size;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_t        f;
    ngx_file_info_t   fi;

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, ngx_errno,
                      ngx_open_file_n " router users file \"%s\" "
                      "of \"router_users\" in %s:%ui failed",
                      file->data, mpcf->users_conf_file,
                      mpcf->users_conf_line);
        return NGX_ERROR;
    }

    ngx_memzero(&f, sizeof(ngx_file_t));

    f.fd = fd;
    f.name = *file;
    f.log = cf->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, ngx_errno,
                      ngx_fd_info_n " \"%s\" failed", file->data);
        goto failed;
    }

    size = (size_t) ngx_file_size(&fi);

    buf = ngx_pnalloc(cf->temp_pool, size + 1);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_file(&f, buf, size, 0);

    if (n == NGX_ERROR) {
        goto failed;
    }

    if ((size_t) n != size) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      ngx_read_file_n " \"%s\" returned only %z bytes "
                      "instead of %uz", file->data, n, size);
        goto failed;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", file->data);
    }

    text->data = buf;
    text->len = size;

    return NGX_OK;

failed:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", file->data);
    }

    return NGX_ERROR;
}


/*
 * each line a user: parsed, its target found, its crypt scheme tried, its
 * login added to the keys; "max" is the longest login
 */

static ngx_int_t
ngx_mail_plus_users_add_lines(ngx_conf_t *cf, ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *file, ngx_str_t *text, ngx_hash_keys_arrays_t *keys,
    ngx_mail_plus_users_t *users, size_t *max)
{
    u_char                       *p, *last, *eol;
    char                         *err;
    ngx_int_t                     rc;
    ngx_str_t                     target;
    ngx_uint_t                    line;
    ngx_array_t                   checked;
    ngx_mail_plus_user_t         *user;
    ngx_mail_plus_user_fields_t   fields;

    if (ngx_array_init(&checked, cf->temp_pool, 4, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *max = 0;
    line = 0;
    last = text->data + text->len;

    for (p = text->data; p < last; p = eol + 1) {

        line++;

        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            eol = last;
        }

        user = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_user_t));
        if (user == NULL) {
            return NGX_ERROR;
        }

        err = NULL;

        rc = ngx_mail_plus_users_parse_line(cf->pool, p, eol, user, &target,
                                            &fields, &err);

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc == NGX_OK && target.len) {
            rc = ngx_mail_plus_users_target(cf, mpcf, user, &target, &err);

        } else if (rc == NGX_OK) {

            /* the extra fields of a passwd-file line, copied to cf->pool */

            rc = ngx_mail_plus_users_fields(mpcf, cf->pool, user, &fields,
                                            &err);
        }

        if (rc == NGX_OK
            && user->scheme == NGX_MAIL_PLUS_SCHEME_CRYPT
            && ngx_mail_plus_crypt_supported(cf, &user->password, &checked)
               != NGX_OK)
        {
            rc = NGX_ERROR;
            err = "password scheme not supported by the C library";
        }

        if (rc != NGX_OK) {
            if (err) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "%s in router users file %s:%ui",
                              err, file->data, line);
            }

            return NGX_ERROR;
        }

        rc = ngx_hash_add_key(keys, &user->login, user,
                              NGX_HASH_READONLY_KEY);

        if (rc == NGX_BUSY) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "duplicate login \"%V\" in router users file %s:%ui",
                          &user->login, file->data, line);
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (user->login.len > *max) {
            *max = user->login.len;
        }

        users->nusers++;
    }

    return NGX_OK;
}


/* the logins' hash, its buckets sized for the longest login */

static ngx_int_t
ngx_mail_plus_users_hash(ngx_conf_t *cf, ngx_mail_plus_users_t *users,
    ngx_hash_keys_arrays_t *keys, size_t max)
{
    ngx_hash_init_t  hash;

    hash.hash = &users->hash;
    hash.key = ngx_hash_key_lc;
    hash.max_size = ngx_max(users->nusers * 2, 1024);

    /* the largest element, as ngx_hash_init() lays it, and a NULL */

    hash.bucket_size = ngx_align(2 * sizeof(void *)
                                 + ngx_align(max + 2, sizeof(void *)),
                                 ngx_cacheline_size);
    hash.bucket_size = ngx_max(hash.bucket_size, 128);
    hash.name = "router_users_hash";
    hash.pool = cf->pool;
    hash.temp_pool = cf->temp_pool;

    return ngx_hash_init(&hash, keys->keys.elts, keys->keys.nelts);
}


/* a pool's name or the address of one of its servers */

static ngx_int_t
ngx_mail_plus_users_target(ngx_conf_t *cf, ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_user_t *user, ngx_str_t *name, char **err)
{
    u_char  *p;

    user->pool = ngx_mail_plus_pool_find(mpcf, name);
    if (user->pool) {
        return NGX_OK;
    }

    user->server = ngx_mail_plus_pool_find_server(mpcf, name);
    if (user->server) {
        user->pool = user->server->pool;
        return NGX_OK;
    }

    p = ngx_pnalloc(cf->temp_pool, sizeof("unknown router pool or server \"\"")
                                   + name->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *ngx_sprintf(p, "unknown router pool or server \"%V\"", name) = '\0';

    *err = (char *) p;

    return NGX_ERROR;
}


/*
 * a user's extra fields made its target: "pool=" a pool, "host=" one of
 * its servers (or of any pool), "port=", "user=" or "destuser=" the login
 * the backend knows, "nologin" with "reason=", "nopassword"; NGX_OK,
 * NGX_ERROR with *err (or without, when memory ran out)
 */

ngx_int_t
ngx_mail_plus_users_fields(ngx_mail_plus_main_conf_t *mpcf, ngx_pool_t *pool,
    ngx_mail_plus_user_t *user, ngx_mail_plus_user_fields_t *fields,
    char **err)
{
    u_char                  *p;
    ngx_uint_t               i;
    ngx_mail_plus_server_t  *servers;

    if (fields->pool.len) {
        user->pool = ngx_mail_plus_pool_find(mpcf, &fields->pool);

        if (user->pool == NULL) {
            p = ngx_pnalloc(pool, sizeof("unknown router pool \"\"")
                                  + fields->pool.len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            *ngx_sprintf(p, "unknown router pool \"%V\"", &fields->pool) =
                                                                        '\0';
            *err = (char *) p;
            return NGX_ERROR;
        }
    }

    if (fields->host.len) {

        if (user->pool) {
            servers = user->pool->servers.elts;

            for (i = 0; i < user->pool->servers.nelts; i++) {
                if ((servers[i].host.len == fields->host.len
                     && ngx_strncmp(servers[i].host.data, fields->host.data,
                                    fields->host.len) == 0)
                    || (servers[i].name.len == fields->host.len
                        && ngx_strncmp(servers[i].name.data,
                                       fields->host.data, fields->host.len)
                           == 0))
                {
                    user->server = &servers[i];
                    break;
                }
            }

        } else {
            user->server = ngx_mail_plus_pool_find_server(mpcf, &fields->host);

            if (user->server) {
                user->pool = user->server->pool;
            }
        }

        if (user->server == NULL) {
            p = ngx_pnalloc(pool, sizeof("host \"\" is not a server of a "
                                         "router pool")
                                  + fields->host.len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            *ngx_sprintf(p, "host \"%V\" is not a server of a router pool",
                         &fields->host) = '\0';
            *err = (char *) p;
            return NGX_ERROR;
        }
    }

    user->port = fields->port;

    /* the values may live shorter than the user */

    if (fields->login.len) {
        user->backend.data = ngx_pstrdup(pool, &fields->login);
        if (user->backend.data == NULL) {
            return NGX_ERROR;
        }

        user->backend.len = fields->login.len;
    }

    if (fields->reason.len) {
        user->reason.data = ngx_pstrdup(pool, &fields->reason);
        if (user->reason.data == NULL) {
            return NGX_ERROR;
        }

        user->reason.len = fields->reason.len;
    }

    user->nologin = fields->nologin;
    user->nopassword = fields->nopassword;

    return NGX_OK;
}


/* one real crypt() per "$id$" met, to know the C library supports it */

static ngx_int_t
ngx_mail_plus_crypt_supported(ngx_conf_t *cf, ngx_str_t *value,
    ngx_array_t *checked)
{
    char               *hash;
    u_char             *p;
    size_t              len;
    ngx_str_t          *id;
    ngx_uint_t          i;
    struct crypt_data  *data;

    p = ngx_strlchr(value->data + 1, value->data + value->len, '$');
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = p + 1 - value->data;

    id = checked->elts;

    for (i = 0; i < checked->nelts; i++) {
        if (id[i].len == len && ngx_strncmp(id[i].data, value->data, len) == 0)
        {
            return NGX_OK;
        }
    }

    data = ngx_pcalloc(cf->temp_pool, sizeof(struct crypt_data));
    if (data == NULL) {
        return NGX_ERROR;
    }

    hash = crypt_r("", (char *) value->data, data);

    if (hash == NULL || hash[0] != '$') {
        return NGX_ERROR;
    }

    id = ngx_array_push(checked);
    if (id == NULL) {
        return NGX_ERROR;
    }

    id->data = value->data;
    id->len = len;

    return NGX_OK;
}


ngx_mail_plus_user_t *
ngx_mail_plus_users_find(ngx_mail_plus_users_t *users, ngx_str_t *login)
{
    ngx_uint_t  key;

    if (users == NULL) {
        return NULL;
    }

    /* the login is in lower case already */

    key = ngx_hash_key(login->data, login->len);

    return ngx_hash_find(&users->hash, key, login->data, login->len);
}


size_t
ngx_mail_plus_password_crypt_size(void)
{
    return sizeof(struct crypt_data);
}


/*
 * The password must be NUL-terminated.  For crypt strings it runs in a
 * thread of its own: it uses no pool then, only "crypt_data".
 */

ngx_int_t
ngx_mail_plus_password_check(ngx_mail_plus_user_t *user, ngx_str_t *password,
    ngx_pool_t *pool, void *crypt_data)
{
    char       *hash;
    u_char     *encrypted;
    size_t      len;
    ngx_int_t   rc;

    /*
     * crypt() and ngx_crypt() read the password as a C string: one with a
     * NUL would be checked cut at it
     */

    if (ngx_strlchr(password->data, password->data + password->len, '\0')) {
        return NGX_DECLINED;
    }

    switch (user->scheme) {

    case NGX_MAIL_PLUS_SCHEME_NONE:

        /* an empty password in the file: Dovecot lets no password match */

        return NGX_DECLINED;

    case NGX_MAIL_PLUS_SCHEME_SHA256:
    case NGX_MAIL_PLUS_SCHEME_SHA512:
    case NGX_MAIL_PLUS_SCHEME_SSHA256:
    case NGX_MAIL_PLUS_SCHEME_SSHA512:

        return ngx_mail_plus_password_sha2(user, password);

    case NGX_MAIL_PLUS_SCHEME_CRYPT:

        ngx_memzero(crypt_data, sizeof(struct crypt_data));

        hash = crypt_r((char *) password->data, (char *) user->password.data,
                       crypt_data);

        if (hash == NULL || hash[0] != '$') {
            return NGX_ERROR;
        }

        len = ngx_strlen(hash);

        if (len != user->password.len) {
            return NGX_DECLINED;
        }

        return CRYPTO_memcmp(hash, user->password.data, len) == 0
               ? NGX_OK : NGX_DECLINED;

    case NGX_MAIL_PLUS_SCHEME_PLAIN:

        if (password->len != user->password.len) {
            return NGX_DECLINED;
        }

        return CRYPTO_memcmp(password->data, user->password.data,
                             password->len) == 0
               ? NGX_OK : NGX_DECLINED;

    default: /* NGX_MAIL_PLUS_SCHEME_SHA, NGX_MAIL_PLUS_SCHEME_SSHA */

        rc = ngx_crypt(pool, password->data, user->password.data, &encrypted);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        len = ngx_strlen(encrypted);

        if (len != user->password.len) {
            return NGX_DECLINED;
        }

        return CRYPTO_memcmp(encrypted, user->password.data, len) == 0
               ? NGX_OK : NGX_DECLINED;
    }
}


/*
 * Dovecot's "{SHA256}", "{SHA512}" and their salted "{SSHA256}",
 * "{SSHA512}": the digest of the password and the salt, then the salt
 */

static ngx_int_t
ngx_mail_plus_password_sha2(ngx_mail_plus_user_t *user, ngx_str_t *password)
{
    u_char         hash[EVP_MAX_MD_SIZE];
    size_t         n;
    ngx_int_t      rc;
    EVP_MD_CTX    *ctx;
    unsigned int   len;
    const EVP_MD  *md;

    if (user->scheme == NGX_MAIL_PLUS_SCHEME_SHA256
        || user->scheme == NGX_MAIL_PLUS_SCHEME_SSHA256)
    {
        md = EVP_sha256();
        n = 32;

    } else {
        md = EVP_sha512();
        n = 64;
    }

    if (user->password.len < n) {
        return NGX_ERROR;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (EVP_DigestInit_ex(ctx, md, NULL) != 1
        || EVP_DigestUpdate(ctx, password->data, password->len) != 1
        || EVP_DigestUpdate(ctx, user->password.data + n,
                            user->password.len - n)
           != 1
        || EVP_DigestFinal_ex(ctx, hash, &len) != 1
        || len != n)
    {
        rc = NGX_ERROR;

    } else {
        rc = CRYPTO_memcmp(hash, user->password.data, n) == 0
             ? NGX_OK : NGX_DECLINED;
    }

    EVP_MD_CTX_free(ctx);

    return rc;
}


/*
 * APOP (RFC 1939) and CRAM-MD5 (RFC 2195): the client sends a digest of the
 * server's salt keyed with the password, so only a cleartext ("{PLAIN}")
 * password can be checked.  NGX_OK: auth->password is now the cleartext,
 * for the backend login; NGX_DECLINED: a wrong digest; NGX_ABORT: no
 * cleartext password to check it with.
 */

ngx_int_t
ngx_mail_plus_password_digest(ngx_mail_plus_user_t *user,
    ngx_mail_plus_auth_t *auth, ngx_pool_t *pool)
{
    u_char        *p;
    u_char         hash[EVP_MAX_MD_SIZE], hex[2 * EVP_MAX_MD_SIZE];
    u_char         digest[2 * EVP_MAX_MD_SIZE];
    ngx_md5_t      md5;
    unsigned int   len;

    if (user->scheme != NGX_MAIL_PLUS_SCHEME_PLAIN) {
        return NGX_ABORT;
    }

    if (auth->method == NGX_MAIL_AUTH_APOP) {
        ngx_md5_init(&md5);
        ngx_md5_update(&md5, auth->salt.data, auth->salt.len);
        ngx_md5_update(&md5, user->password.data, user->password.len);
        ngx_md5_final(hash, &md5);
        len = 16;

    } else if (HMAC(EVP_md5(), user->password.data, user->password.len,
                    auth->salt.data, auth->salt.len, hash, &len)
               == NULL)
    {
        return NGX_ERROR;
    }

    if (auth->password.len != 2 * len) {
        return NGX_DECLINED;
    }

    ngx_hex_dump(hex, hash, len);
    ngx_strlow(digest, auth->password.data, 2 * len);

    if (CRYPTO_memcmp(hex, digest, 2 * len) != 0) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(pool, user->password.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, user->password.data, user->password.len);
    p[user->password.len] = '\0';

    auth->password.data = p;
    auth->password.len = user->password.len;

    return NGX_OK;
}
