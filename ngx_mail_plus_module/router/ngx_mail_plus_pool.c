
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include <ngx_md5.h>
#include "ngx_mail_plus_router.h"


/*
 * A pool is a named group of backend servers.  Its primary servers sit on
 * a consistent-hash ring: each unit of weight puts "router_hash_points"
 * points on the ring, derived with MD5 from the server's key, and a login
 * belongs to the first point at or after the hash of the login.  Removing
 * one of N servers thus moves only that server's logins, about 1/N of all.
 */


static char *ngx_mail_plus_pool_directive(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static char *ngx_mail_plus_pool_token_login(ngx_conf_t *cf,
    ngx_mail_plus_pool_t *pool);
static char *ngx_mail_plus_pool_server(ngx_conf_t *cf,
    ngx_mail_plus_pool_t *pool);
static char *ngx_mail_plus_pool_server_params(ngx_conf_t *cf,
    ngx_mail_plus_pool_t *pool, ngx_mail_plus_server_t *server);
static int ngx_libc_cdecl ngx_mail_plus_point_cmp(const void *one,
    const void *two);
static uint32_t ngx_mail_plus_hash(u_char *data, size_t len);


static ngx_str_t  ngx_mail_plus_protocol_names[] = {
    ngx_string("imap"),
    ngx_string("pop3"),
    ngx_string("smtp"),
    ngx_string("lmtp")
};


char *
ngx_mail_plus_pool_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    char                   *rv;
    ngx_str_t              *value;
    ngx_conf_t              save;
    ngx_mail_plus_pool_t   *pool, **pp;

    value = cf->args->elts;

    if (ngx_mail_plus_pool_find(mpcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate router pool \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    pool = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_pool_t));
    if (pool == NULL) {
        return NGX_CONF_ERROR;
    }

    pool->name = value[1];
    pool->auth = NGX_CONF_UNSET_UINT;
    pool->forward = NGX_CONF_UNSET_UINT;
    pool->token_login = NGX_CONF_UNSET_UINT;
    pool->file = cf->conf_file->file.name.data;
    pool->line = cf->conf_file->line;

    if (ngx_array_init(&pool->servers, cf->pool, 4,
                       sizeof(ngx_mail_plus_server_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    pp = ngx_array_push(&mpcf->pools);
    if (pp == NULL) {
        return NGX_CONF_ERROR;
    }

    *pp = pool;

    save = *cf;
    cf->handler = ngx_mail_plus_pool_directive;
    cf->handler_conf = (char *) pool;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (pool->servers.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no servers in router pool \"%V\"", &pool->name);
        return NGX_CONF_ERROR;
    }

    if (pool->auth == NGX_CONF_UNSET_UINT) {
        pool->auth = NGX_MAIL_PLUS_AUTH_ROUTER;
    }

    if (pool->token_login == NGX_CONF_UNSET_UINT) {
        pool->token_login = NGX_MAIL_PLUS_TOKEN_LOGIN_TOKEN;
    }

    /*
     * a backend that checks passwords delays its refusals per client
     * address: it must see the client's, not nginx's, or one attacker
     * slows down every login
     */

    if (pool->forward == NGX_CONF_UNSET_UINT) {
        pool->forward = (pool->auth == NGX_MAIL_PLUS_AUTH_BACKEND)
                        ? NGX_MAIL_PLUS_FORWARD_OFFERED
                        : NGX_MAIL_PLUS_FORWARD_OFF;
    }

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_pool_directive(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    ngx_mail_plus_pool_t  *pool;
    ngx_str_t             *value;

    pool = (ngx_mail_plus_pool_t *) cf->handler_conf;
    value = cf->args->elts;

    if (value[0].len == 6 && ngx_strncmp(value[0].data, "server", 6) == 0) {
        return ngx_mail_plus_pool_server(cf, pool);
    }

    if (value[0].len == 4 && ngx_strncmp(value[0].data, "auth", 4) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid;
        }

        if (pool->auth != NGX_CONF_UNSET_UINT) {
            return "is duplicate";
        }

        if (ngx_strcmp(value[1].data, "router") == 0) {
            pool->auth = NGX_MAIL_PLUS_AUTH_ROUTER;
            return NGX_CONF_OK;
        }

        if (ngx_strcmp(value[1].data, "backend") == 0) {
            pool->auth = NGX_MAIL_PLUS_AUTH_BACKEND;
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"auth\" of router pool, "
                           "it must be \"router\" or \"backend\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[0].len == 11
        && ngx_strncmp(value[0].data, "token_login", 11) == 0)
    {
        return ngx_mail_plus_pool_token_login(cf, pool);
    }

    if (value[0].len == 7 && ngx_strncmp(value[0].data, "forward", 7) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid;
        }

        if (pool->forward != NGX_CONF_UNSET_UINT) {
            return "is duplicate";
        }

        if (ngx_strcmp(value[1].data, "off") == 0) {
            pool->forward = NGX_MAIL_PLUS_FORWARD_OFF;
            return NGX_CONF_OK;
        }

        if (ngx_strcmp(value[1].data, "native") == 0) {
            pool->forward = NGX_MAIL_PLUS_FORWARD_NATIVE;
            return NGX_CONF_OK;
        }

        if (ngx_strcmp(value[1].data, "proxy_protocol") == 0) {
            pool->forward = NGX_MAIL_PLUS_FORWARD_PROXY;
            return NGX_CONF_OK;
        }

        if (ngx_strcmp(value[1].data, "proxy_protocol_v2") == 0) {
            pool->forward = NGX_MAIL_PLUS_FORWARD_PROXY2;
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"forward\" of router "
                           "pool, it must be \"off\", \"native\", "
                           "\"proxy_protocol\" or \"proxy_protocol_v2\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in router pool", &value[0]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid number of arguments in \"%V\" "
                       "of router pool", &value[0]);
    return NGX_CONF_ERROR;
}


/*
 * "token_login token;" or "token_login master USER PASSWORD_FILE;": how
 * the backends are logged in to after a token login.  The master
 * password is the file's first line, read now, without its line end; a
 * control byte in it or in USER is refused, and it is never logged.
 */

static char *
ngx_mail_plus_pool_token_login(ngx_conf_t *cf, ngx_mail_plus_pool_t *pool)
{
    u_char      *p;
    ssize_t      n;
    ngx_str_t   *value, name, password;
    ngx_file_t   file;
    u_char       buf[1024];

    value = cf->args->elts;

    if (pool->token_login != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "token") == 0) {
        pool->token_login = NGX_MAIL_PLUS_TOKEN_LOGIN_TOKEN;
        return NGX_CONF_OK;
    }

    if (cf->args->nelts != 4 || ngx_strcmp(value[1].data, "master") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"token_login\" of router pool, it must "
                           "be \"token\" or \"master USER PASSWORD_FILE\"");
        return NGX_CONF_ERROR;
    }

    for (p = value[2].data; p < value[2].data + value[2].len; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
            break;
        }
    }

    if (value[2].len == 0 || p != value[2].data + value[2].len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid master user \"%V\" in \"token_login\" "
                           "of router pool", &value[2]);
        return NGX_CONF_ERROR;
    }

    name = value[3];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, buf, sizeof(buf), 0);

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &name);
    }

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    /* one line: its LF (and a CR before it) dropped */

    if (n > 0 && buf[n - 1] == LF) {
        n--;

        if (n > 0 && buf[n - 1] == CR) {
            n--;
        }
    }

    password.data = buf;
    password.len = n;

    if (n == 0 || n == (ssize_t) sizeof(buf)
        || ngx_mail_plus_text_has_ctl(&password))
    {
        ngx_explicit_memzero(buf, sizeof(buf));

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the master password in \"%V\" must be one line "
                           "of fewer than %uz bytes, with no control byte",
                           &name, sizeof(buf) - 1);
        return NGX_CONF_ERROR;
    }

    pool->master_password.data = ngx_pnalloc(cf->pool, n);
    if (pool->master_password.data == NULL) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(pool->master_password.data, buf, n);
    pool->master_password.len = n;

    ngx_explicit_memzero(buf, sizeof(buf));

    pool->master_user = value[2];
    pool->token_login = NGX_MAIL_PLUS_TOKEN_LOGIN_MASTER;

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_pool_server(ngx_conf_t *cf, ngx_mail_plus_pool_t *pool)
{
    u_char                  *p;
    size_t                   len;
    ngx_str_t               *value;
    ngx_url_t                u;
    ngx_mail_plus_server_t  *server;

    value = cf->args->elts;

    if (cf->args->nelts < 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"server\" of router pool \"%V\" needs an address "
                           "and at least one protocol port", &pool->name);
        return NGX_CONF_ERROR;
    }

    if (pool->servers.nelts == NGX_MAIL_PLUS_MAX_SERVERS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many servers in router pool \"%V\", "
                           "at most %d", &pool->name,
                           NGX_MAIL_PLUS_MAX_SERVERS);
        return NGX_CONF_ERROR;
    }

    server = ngx_array_push(&pool->servers);
    if (server == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(server, sizeof(ngx_mail_plus_server_t));

    server->index = pool->servers.nelts - 1;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 0;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in server \"%V\" of router pool \"%V\"",
                               u.err, &u.url, &pool->name);
        }

        return NGX_CONF_ERROR;
    }

    if (!u.no_port || u.family == AF_UNIX || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "server \"%V\" of router pool \"%V\" must be an "
                           "IP address or host name without a port; ports "
                           "are given per protocol, e.g. \"imap=143\"",
                           &u.url, &pool->name);
        return NGX_CONF_ERROR;
    }

    server->name = value[1];
    server->addr = u.addrs[0];
    server->weight = 1;
    server->pool = pool;

    p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(server->addr.sockaddr, server->addr.socklen, p,
                        NGX_SOCKADDR_STRLEN, 0);

    server->host.data = p;
    server->host.len = len;

    return ngx_mail_plus_pool_server_params(cf, pool, server);
}


/* a server's parameters: "backup", "weight=", a port per protocol */

static char *
ngx_mail_plus_pool_server_params(ngx_conf_t *cf, ngx_mail_plus_pool_t *pool,
    ngx_mail_plus_server_t *server)
{
    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_uint_t   i, k, ports;

    value = cf->args->elts;

    ports = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "backup") == 0) {
            server->backup = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "weight=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n == NGX_ERROR || n < 1 || n > 100) {
                goto invalid;
            }

            server->weight = n;
            continue;
        }

        for (k = 0; k < NGX_MAIL_PLUS_NPROTOCOLS; k++) {
            s = ngx_mail_plus_protocol_names[k];

            if (value[i].len > s.len + 1
                && ngx_strncmp(value[i].data, s.data, s.len) == 0
                && value[i].data[s.len] == '=')
            {
                break;
            }
        }

        if (k == NGX_MAIL_PLUS_NPROTOCOLS) {
            goto invalid;
        }

        n = ngx_atoi(value[i].data + s.len + 1, value[i].len - s.len - 1);
        if (n == NGX_ERROR || n < 1 || n > 65535) {
            goto invalid;
        }

        server->port[k] = (in_port_t) n;
        ports++;
    }

    if (ports == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "server \"%V\" of router pool \"%V\" has no "
                           "protocol port", &value[1], &pool->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in server \"%V\" "
                       "of router pool \"%V\"",
                       &value[i], &value[1], &pool->name);
    return NGX_CONF_ERROR;
}


ngx_mail_plus_pool_t *
ngx_mail_plus_pool_find(ngx_mail_plus_main_conf_t *mpcf, ngx_str_t *name)
{
    ngx_uint_t              i;
    ngx_mail_plus_pool_t  **pools;

    pools = mpcf->pools.elts;

    for (i = 0; i < mpcf->pools.nelts; i++) {
        if (pools[i]->name.len == name->len
            && ngx_strncmp(pools[i]->name.data, name->data, name->len) == 0)
        {
            return pools[i];
        }
    }

    return NULL;
}


ngx_mail_plus_server_t *
ngx_mail_plus_pool_find_server(ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *host)
{
    ngx_uint_t               i, k;
    ngx_mail_plus_pool_t   **pools;
    ngx_mail_plus_server_t  *servers;

    pools = mpcf->pools.elts;

    for (i = 0; i < mpcf->pools.nelts; i++) {
        servers = pools[i]->servers.elts;

        for (k = 0; k < pools[i]->servers.nelts; k++) {

            if ((servers[k].host.len == host->len
                 && ngx_strncmp(servers[k].host.data, host->data, host->len)
                    == 0)
                || (servers[k].name.len == host->len
                    && ngx_strncmp(servers[k].name.data, host->data,
                                   host->len)
                       == 0))
            {
                return &servers[k];
            }
        }
    }

    return NULL;
}


ngx_int_t
ngx_mail_plus_pool_init_ring(ngx_conf_t *cf, ngx_mail_plus_pool_t *pool,
    ngx_uint_t points)
{
    u_char                  *p, key[NGX_SOCKADDR_STRLEN + 32];
    u_char                   digest[16];
    ngx_md5_t                md5;
    ngx_uint_t               i, j, k, n, total, first;
    ngx_mail_plus_point_t   *point;
    ngx_mail_plus_server_t  *servers;

    servers = pool->servers.elts;

    total = 0;

    for (i = 0; i < pool->servers.nelts; i++) {
        if (!servers[i].backup) {
            total += servers[i].weight * points;
            pool->nprimary++;
        }
    }

    if (total == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "router pool \"%V\" in %s:%ui has no primary server",
                      &pool->name, pool->file, pool->line);
        return NGX_ERROR;
    }

    /* ketama: four 32-bit points from each MD5 digest */

    total = (total + 3) & ~((ngx_uint_t) 3);

    pool->points = ngx_palloc(cf->pool, total * sizeof(ngx_mail_plus_point_t));
    if (pool->points == NULL) {
        return NGX_ERROR;
    }

    point = pool->points;
    n = 0;

    for (i = 0; i < pool->servers.nelts; i++) {

        if (servers[i].backup) {
            continue;
        }

        /*
         * the key of a server is its address and its first protocol
         * port, so that servers sharing an address stay apart while
         * other servers come and go
         */

        for (first = 0; first < NGX_MAIL_PLUS_NPROTOCOLS; first++) {
            if (servers[i].port[first]) {
                break;
            }
        }

        for (j = 0; j < (servers[i].weight * points + 3) / 4; j++) {

            p = ngx_sprintf(key, "%V:%ud-%ui", &servers[i].host,
                            (ngx_uint_t) servers[i].port[first], j);

            ngx_md5_init(&md5);
            ngx_md5_update(&md5, key, p - key);
            ngx_md5_final(digest, &md5);

            for (k = 0; k < 4 && n < total; k++) {
                point[n].hash = ((uint32_t) digest[k * 4 + 3] << 24)
                                | ((uint32_t) digest[k * 4 + 2] << 16)
                                | ((uint32_t) digest[k * 4 + 1] << 8)
                                | (uint32_t) digest[k * 4];
                point[n].server = &servers[i];
                n++;
            }
        }
    }

    ngx_qsort(point, n, sizeof(ngx_mail_plus_point_t),
              ngx_mail_plus_point_cmp);

    pool->npoints = n;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_mail_plus_point_cmp(const void *one, const void *two)
{
    ngx_mail_plus_point_t *first = (ngx_mail_plus_point_t *) one;
    ngx_mail_plus_point_t *second = (ngx_mail_plus_point_t *) two;

    if (first->hash < second->hash) {
        return -1;
    }

    if (first->hash > second->hash) {
        return 1;
    }

    /* equal hashes: a fixed order, independent of the sort */

    if (first->server->name.len != second->server->name.len) {
        return (int) first->server->name.len
               - (int) second->server->name.len;
    }

    return ngx_strncmp(first->server->name.data, second->server->name.data,
                       first->server->name.len);
}


/*
 * The servers of a pool in the order a key meets them: from the key's
 * point around the ring, each primary server once, then the backup servers
 * in the order of the configuration.  The first that serves the protocol,
 * is up, and is not among those "tried" (a bitmap of server indexes, or
 * NULL) is the answer, so that a session can fail over from one server to
 * the next.
 */

#define ngx_mail_plus_bit(map, n)                                            \
    ((map)[(n) / 64] & ((uint64_t) 1 << ((n) % 64)))


ngx_mail_plus_server_t *
ngx_mail_plus_pool_get_server(ngx_mail_plus_pool_t *pool, ngx_str_t *key,
    ngx_uint_t protocol, uint64_t *tried)
{
    uint32_t                 hash;
    uint64_t                 seen[NGX_MAIL_PLUS_MAX_SERVERS / 64];
    ngx_uint_t               i, n, lo, hi, mid, seen_all;
    ngx_mail_plus_point_t   *point;
    ngx_mail_plus_server_t  *server, *servers;

    point = pool->points;
    hash = ngx_mail_plus_hash(key->data, key->len);

    /* the first point whose hash is not less than that of the key */

    lo = 0;
    hi = pool->npoints;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (point[mid].hash < hash) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    ngx_memzero(seen, sizeof(seen));
    seen_all = 0;

    for (i = 0; i < pool->npoints && seen_all < pool->nprimary; i++) {
        server = point[(lo + i) % pool->npoints].server;
        n = server->index;

        if (ngx_mail_plus_bit(seen, n)) {
            continue;
        }

        seen[n / 64] |= (uint64_t) 1 << (n % 64);
        seen_all++;

        if ((tried == NULL || !ngx_mail_plus_bit(tried, n))
            && ngx_mail_plus_server_usable(server, protocol))
        {
            return server;
        }
    }

    servers = pool->servers.elts;

    for (i = 0; i < pool->servers.nelts; i++) {

        if (servers[i].backup
            && (tried == NULL || !ngx_mail_plus_bit(tried, i))
            && ngx_mail_plus_server_usable(&servers[i], protocol))
        {
            return &servers[i];
        }
    }

    return NULL;
}


/* a server may take a session of the protocol if it serves it and is up */

ngx_uint_t
ngx_mail_plus_server_usable(ngx_mail_plus_server_t *server,
    ngx_uint_t protocol)
{
    if (server->port[protocol] == 0) {
        return 0;
    }

    if (server->health[protocol] && server->health[protocol]->down) {
        return 0;
    }

    return 1;
}


static uint32_t
ngx_mail_plus_hash(u_char *data, size_t len)
{
    u_char     digest[16];
    ngx_md5_t  md5;

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, data, len);
    ngx_md5_final(digest, &md5);

    return ((uint32_t) digest[3] << 24) | ((uint32_t) digest[2] << 16)
           | ((uint32_t) digest[1] << 8) | (uint32_t) digest[0];
}
