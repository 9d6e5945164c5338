
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"


/*
 * The directories in order: "router_directory TYPE [NAME] { ... }" read
 * into a list of parameters that the source's conf() takes, and a lookup
 * that asks, for each directory in turn, the cache and then the source,
 * until one knows the user.  A directory that does not know the user
 * passes to the next; one that cannot answer passes too, and the answer
 * is a temporary failure if no later one knows the user.  When a source
 * cannot answer, an expired answer within "router_directory_stale" of
 * its lifetime is taken instead.
 */


typedef struct {
    ngx_mail_plus_dir_t        *dir;
    ngx_conf_t                 *cf;
} ngx_mail_plus_dir_conf_ctx_t;


static char *ngx_mail_plus_dir_param_handler(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_mail_plus_dir_common(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir);
static u_char *ngx_mail_plus_dir_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_mail_plus_dir_next(ngx_mail_plus_dir_req_t *req);
static ngx_int_t ngx_mail_plus_dir_answered(ngx_mail_plus_dir_req_t *req);
static ngx_mail_plus_dir_stats_t *ngx_mail_plus_dir_stats(
    ngx_mail_plus_dir_t *dir);


static ngx_mail_plus_dir_ops_t  *ngx_mail_plus_dir_sources[] = {
    &ngx_mail_plus_dir_dovecot_ops,
    &ngx_mail_plus_dir_pgsql_ops,
    &ngx_mail_plus_dir_ldap_ops,
    NULL
};


char *
ngx_mail_plus_dir_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    char                        *rv;
    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_conf_t                   save;
    ngx_mail_plus_dir_t         *dir, **dirp;
    ngx_mail_plus_dir_ops_t     *ops;
    ngx_mail_plus_dir_param_t   *param;

    value = cf->args->elts;

    ops = NULL;

    for (i = 0; ngx_mail_plus_dir_sources[i]; i++) {
        if (ngx_strcmp(ngx_mail_plus_dir_sources[i]->type.data, value[1].data)
            == 0)
        {
            ops = ngx_mail_plus_dir_sources[i];
            break;
        }
    }

    if (ops == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown directory type \"%V\", it must be "
                           "\"dovecot\", \"pgsql\" or \"ldap\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (mpcf->directories == NULL) {
        mpcf->directories = ngx_array_create(cf->pool, 2,
                                             sizeof(ngx_mail_plus_dir_t *));
        if (mpcf->directories == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (mpcf->directories->nelts == NGX_MAIL_PLUS_DIR_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many directories, at most %d",
                           NGX_MAIL_PLUS_DIR_MAX);
        return NGX_CONF_ERROR;
    }

    dir = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_dir_t));
    if (dir == NULL) {
        return NGX_CONF_ERROR;
    }

    dir->ops = ops;
    dir->index = mpcf->directories->nelts;
    dir->mpcf = mpcf;
    dir->file = cf->conf_file->file.name.data;
    dir->line = cf->conf_file->line;

    if (cf->args->nelts == 3) {
        dir->name = value[2];

        if (dir->name.len == 0 || dir->name.len > NGX_MAIL_PLUS_DIR_NAME_LEN) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid directory name \"%V\", it must be "
                               "1 to %d characters", &dir->name,
                               NGX_MAIL_PLUS_DIR_NAME_LEN);
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < dir->name.len; i++) {
            if (!((dir->name.data[i] >= 'a' && dir->name.data[i] <= 'z')
                  || (dir->name.data[i] >= 'A' && dir->name.data[i] <= 'Z')
                  || (dir->name.data[i] >= '0' && dir->name.data[i] <= '9')
                  || dir->name.data[i] == '_' || dir->name.data[i] == '-'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid directory name \"%V\"",
                                   &dir->name);
                return NGX_CONF_ERROR;
            }
        }

    } else {
        dir->name = ops->type;
    }

    dirp = mpcf->directories->elts;

    for (i = 0; i < mpcf->directories->nelts; i++) {
        if (dirp[i]->name.len == dir->name.len
            && ngx_strncmp(dirp[i]->name.data, dir->name.data, dir->name.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate directory \"%V\", a second "
                               "directory of a type needs a name",
                               &dir->name);
            return NGX_CONF_ERROR;
        }
    }

    dirp = ngx_array_push(mpcf->directories);
    if (dirp == NULL) {
        return NGX_CONF_ERROR;
    }

    *dirp = dir;

    if (ngx_array_init(&dir->params, cf->pool, 8,
                       sizeof(ngx_mail_plus_dir_param_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    save = *cf;

    cf->handler = ngx_mail_plus_dir_param_handler;
    cf->handler_conf = (void *) dir;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_mail_plus_dir_common(cf, dir);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ops->conf(cf, dir);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    param = dir->params.elts;

    for (i = 0; i < dir->params.nelts; i++) {
        if (!param[i].used) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown parameter \"%V\" of directory \"%V\" "
                          "in %s:%ui", &param[i].name, &dir->name,
                          param[i].file, param[i].line);
            return NGX_CONF_ERROR;
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, cf->log, 0,
                   "router: directory %ui \"%V\" of type %V",
                   dir->index, &dir->name, &ops->type);

    return NGX_CONF_OK;
}


/* each line of the block: a name and its arguments, each name once */

static char *
ngx_mail_plus_dir_param_handler(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_mail_plus_dir_t  *dir = conf;

    ngx_str_t                  *value, *arg;
    ngx_uint_t                  i;
    ngx_mail_plus_dir_param_t  *param;

    value = cf->args->elts;

    param = dir->params.elts;

    for (i = 0; i < dir->params.nelts; i++) {
        if (param[i].name.len == value[0].len
            && ngx_strncmp(param[i].name.data, value[0].data, value[0].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" is duplicate", &value[0]);
            return NGX_CONF_ERROR;
        }
    }

    param = ngx_array_push(&dir->params);
    if (param == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(param, sizeof(ngx_mail_plus_dir_param_t));

    param->name = value[0];
    param->file = cf->conf_file->file.name.data;
    param->line = cf->conf_file->line;

    param->args = ngx_array_create(cf->pool, cf->args->nelts,
                                   sizeof(ngx_str_t));
    if (param->args == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        arg = ngx_array_push(param->args);
        if (arg == NULL) {
            return NGX_CONF_ERROR;
        }

        *arg = value[i];
    }

    if (param->args->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs a value", &value[0]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the parameters every directory has: "timeout", "connections" */

static char *
ngx_mail_plus_dir_common(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    ngx_int_t                   n;
    ngx_str_t                  *value;
    ngx_mail_plus_dir_param_t  *param;

    dir->timeout = 5000;
    dir->connections = 4;

    param = ngx_mail_plus_dir_param(dir, "timeout");

    if (param) {
        value = param->args->elts;

        dir->timeout = ngx_parse_time(&value[0], 0);

        if (param->args->nelts != 1 || dir->timeout == (ngx_msec_t) NGX_ERROR
            || dir->timeout == 0)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "invalid \"timeout\" of directory \"%V\" in %s:%ui",
                          &dir->name, param->file, param->line);
            return NGX_CONF_ERROR;
        }
    }

    param = ngx_mail_plus_dir_param(dir, "connections");

    if (param) {
        value = param->args->elts;

        n = ngx_atoi(value[0].data, value[0].len);

        if (param->args->nelts != 1 || n == NGX_ERROR || n == 0 || n > 1024) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "invalid \"connections\" of directory \"%V\" "
                          "in %s:%ui, it must be 1 to 1024",
                          &dir->name, param->file, param->line);
            return NGX_CONF_ERROR;
        }

        dir->connections = n;
    }

    return NGX_CONF_OK;
}


/* a parameter of the block, NULL if it was not given; it is then used */

ngx_mail_plus_dir_param_t *
ngx_mail_plus_dir_param(ngx_mail_plus_dir_t *dir, char *name)
{
    size_t                      len;
    ngx_uint_t                  i;
    ngx_mail_plus_dir_param_t  *param;

    len = ngx_strlen(name);
    param = dir->params.elts;

    for (i = 0; i < dir->params.nelts; i++) {
        if (param[i].name.len == len
            && ngx_strncmp(param[i].name.data, name, len) == 0)
        {
            param[i].used = 1;
            return &param[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_mail_plus_dir_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_main_conf_t *mpcf)
{
    ngx_uint_t             i;
    ngx_mail_plus_dir_t  **dir;

    if (mpcf->directories == NULL) {
        return NGX_OK;
    }

    dir = mpcf->directories->elts;

    for (i = 0; i < mpcf->directories->nelts; i++) {
        if (dir[i]->ops->init_process
            && dir[i]->ops->init_process(cycle, dir[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_mail_plus_dir_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_main_conf_t *mpcf)
{
    ngx_uint_t             i;
    ngx_mail_plus_dir_t  **dir;

    if (mpcf->directories == NULL) {
        return;
    }

    dir = mpcf->directories->elts;

    for (i = 0; i < mpcf->directories->nelts; i++) {
        if (dir[i]->ops->exit_process) {
            dir[i]->ops->exit_process(cycle, dir[i]);
        }
    }
}


/*
 * a request in a pool of its own, with a log of its own (as a login
 * check has): its caller may go away while a source works on it
 */

ngx_mail_plus_dir_req_t *
ngx_mail_plus_dir_create(ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log)
{
    ngx_pool_t               *pool;
    ngx_mail_plus_dir_req_t  *req;

    pool = ngx_mail_plus_own_pool(log, sizeof(ngx_mail_plus_dir_req_t),
                                  (void **) &req);
    if (pool == NULL) {
        return NULL;
    }

    req->log = pool->log;
    req->log->handler = ngx_mail_plus_dir_log_error;
    req->log->data = req;

    req->pool = pool;
    req->mpcf = mpcf;
    req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;

    return req;
}


static u_char *
ngx_mail_plus_dir_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                   *p;
    ngx_mail_plus_dir_req_t  *req;

    req = log->data;

    p = buf;

    if (req->dir) {
        p = ngx_snprintf(p, len, ", directory: %V", &req->dir->name);
        len -= p - buf;
        buf = p;
    }

    if (req->client.len) {
        p = ngx_snprintf(p, len, ", client: %V", &req->client);
    }

    return p;
}


/*
 * the question set (type, protocol, login, password, client, handler):
 * NGX_OK, the answer is in the request; NGX_AGAIN, the handler will be
 * called with it; NGX_ERROR
 */

ngx_int_t
ngx_mail_plus_dir_lookup(ngx_mail_plus_dir_req_t *req)
{
    ngx_str_t  parts[2];

    if (req->mpcf->directories == NULL) {
        req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
        return NGX_OK;
    }

    if (req->type == NGX_MAIL_PLUS_DIR_PASSDB) {
        parts[0] = req->login;
        parts[1] = req->password;

        req->hmac_len = ngx_mail_plus_dir_cache_hmac(req->mpcf, parts, 2,
                                                     req->hmac);
    }

    req->next = 0;
    req->tempfail = 0;
    req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;

    return ngx_mail_plus_dir_next(req);
}


/* a "router_directory" block by its name, NULL if there is none */

ngx_mail_plus_dir_t *
ngx_mail_plus_dir_find(ngx_mail_plus_main_conf_t *mpcf, ngx_str_t *name)
{
    ngx_uint_t            i;
    ngx_mail_plus_dir_t  **dirs;

    if (mpcf->directories == NULL) {
        return NULL;
    }

    dirs = mpcf->directories->elts;

    for (i = 0; i < mpcf->directories->nelts; i++) {
        if (dirs[i]->name.len == name->len
            && ngx_strncmp(dirs[i]->name.data, name->data, name->len) == 0)
        {
            return dirs[i];
        }
    }

    return NULL;
}


/*
 * one directory asked, past the cache and without the others: a question
 * only it can answer (a token for Dovecot's auth service); as
 * ngx_mail_plus_dir_lookup() returns
 */

ngx_int_t
ngx_mail_plus_dir_ask(ngx_mail_plus_dir_req_t *req, ngx_mail_plus_dir_t *dir)
{
    ngx_int_t  rc;

    req->dir = dir;
    req->one = 1;
    req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
    req->error.len = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: asking directory \"%V\" alone, mechanism %ui",
                   &dir->name, req->mech);

    (void) ngx_atomic_fetch_add(&ngx_mail_plus_dir_stats(dir)->lookups, 1);

    rc = dir->ops->lookup(req);

    if (rc == NGX_AGAIN) {
        req->pending = 1;
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        ngx_str_set(&req->error, "lookup failed");
    }

    if (req->result == NGX_MAIL_PLUS_DIR_TEMPFAIL) {
        (void) ngx_atomic_fetch_add(&ngx_mail_plus_dir_stats(dir)->failures,
                                    1);
    }

    return NGX_OK;
}


/* the directories from req->next on, until one knows the user */

static ngx_int_t
ngx_mail_plus_dir_next(ngx_mail_plus_dir_req_t *req)
{
    ngx_int_t                   rc;
    ngx_mail_plus_dir_t        *dir, **dirs;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = req->mpcf;
    dirs = mpcf->directories->elts;

    while (req->next < mpcf->directories->nelts) {

        dir = dirs[req->next++];

        if (req->type == NGX_MAIL_PLUS_DIR_USERDB && !dir->userdb) {
            continue;
        }

        req->dir = dir;
        req->hash.len = 0;
        req->verified = 0;
        req->cached = 0;
        req->stale = 0;
        ngx_memzero(&req->fields, sizeof(ngx_mail_plus_user_fields_t));

        if (ngx_mail_plus_dir_cache_get(req, 0) == NGX_OK) {

            (void) ngx_atomic_fetch_add(&ngx_mail_plus_dir_stats(dir)->hits,
                                        1);

            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                           "router: directory \"%V\" answered %ui "
                           "from the cache", &dir->name, req->result);

            if (req->result != NGX_MAIL_PLUS_DIR_UNKNOWN) {
                return NGX_OK;
            }

            continue;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: asking directory \"%V\" for \"%V\" (%s)",
                       &dir->name, &req->login,
                       req->type == NGX_MAIL_PLUS_DIR_PASSDB ? "login"
                                                             : "recipient");

        (void) ngx_atomic_fetch_add(&ngx_mail_plus_dir_stats(dir)->lookups, 1);

        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        req->error.len = 0;

        rc = dir->ops->lookup(req);

        if (rc == NGX_AGAIN) {
            req->pending = 1;
            return NGX_AGAIN;
        }

        if (rc != NGX_OK) {
            req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
            ngx_str_set(&req->error, "lookup failed");
        }

        if (ngx_mail_plus_dir_answered(req) == NGX_OK) {
            return NGX_OK;
        }

    }

    req->result = req->tempfail ? NGX_MAIL_PLUS_DIR_TEMPFAIL
                           : NGX_MAIL_PLUS_DIR_UNKNOWN;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: no directory knows the user%s",
                   req->tempfail ? ", one could not answer" : "");

    return NGX_OK;
}


/*
 * a source's answer: cached, or replaced by a stale one if the source
 * could not answer; NGX_OK when it is final, NGX_DECLINED to go on
 */

static ngx_int_t
ngx_mail_plus_dir_answered(ngx_mail_plus_dir_req_t *req)
{
    ngx_mail_plus_dir_t        *dir;
    ngx_mail_plus_dir_stats_t  *stats;

    dir = req->dir;
    stats = ngx_mail_plus_dir_stats(dir);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: directory \"%V\" answered %ui",
                   &dir->name, req->result);

    switch (req->result) {

    case NGX_MAIL_PLUS_DIR_TEMPFAIL:

        (void) ngx_atomic_fetch_add(&stats->failures, 1);

        if (dir->mpcf->dir_stale
            && ngx_mail_plus_dir_cache_get(req, 1) == NGX_OK)
        {
            (void) ngx_atomic_fetch_add(&stats->stale, 1);

            ngx_log_error(NGX_LOG_WARN, req->log, 0,
                          "directory \"%V\" could not answer (%V), "
                          "a stale answer is used for \"%V\"",
                          &dir->name, &req->error, &req->login);

            return req->result == NGX_MAIL_PLUS_DIR_UNKNOWN ? NGX_DECLINED
                                                            : NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, req->log, 0,
                      "directory \"%V\" could not answer for \"%V\": %V",
                      &dir->name, &req->login, &req->error);

        req->tempfail = 1;

        return NGX_DECLINED;

    case NGX_MAIL_PLUS_DIR_UNKNOWN:
        ngx_mail_plus_dir_cache_put(req);
        return NGX_DECLINED;

    default: /* FOUND, REFUSED */
        ngx_mail_plus_dir_cache_put(req);
        return NGX_OK;
    }
}


/* a source's answer to a lookup that returned NGX_AGAIN */

void
ngx_mail_plus_dir_done(ngx_mail_plus_dir_req_t *req)
{
    ngx_int_t  rc;

    req->pending = 0;

    if (req->cancelled) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: directory request %p answered, its caller "
                       "is gone", req);

        ngx_destroy_pool(req->pool);
        return;
    }

    if (req->one) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: directory \"%V\" answered %ui",
                       &req->dir->name, req->result);

        if (req->result == NGX_MAIL_PLUS_DIR_TEMPFAIL) {
            (void) ngx_atomic_fetch_add(
                               &ngx_mail_plus_dir_stats(req->dir)->failures, 1);
        }

        req->handler(req);
        return;
    }

    if (ngx_mail_plus_dir_answered(req) == NGX_OK) {
        req->handler(req);
        return;
    }

    rc = ngx_mail_plus_dir_next(req);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc != NGX_OK) {
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        ngx_str_set(&req->error, "lookup failed");
    }

    req->handler(req);
}


/*
 * the router checked the hash a source gave: the cache keeps whether the
 * password was right, as an HMAC of it
 */

void
ngx_mail_plus_dir_verified(ngx_mail_plus_dir_req_t *req, ngx_uint_t right)
{
    if (req->dir == NULL || req->cached || req->hmac_len == 0) {
        return;
    }

    ngx_mail_plus_dir_cache_password(req, right);
}


void
ngx_mail_plus_dir_free(ngx_mail_plus_dir_req_t *req)
{
    if (req->pending) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: directory request %p cancelled while "
                       "a source works on it", req);

        req->cancelled = 1;
        return;
    }

    ngx_destroy_pool(req->pool);
}


/*
 * a source's state, in the shared zone: logged when it changes, by the
 * worker that saw it change
 */

void
ngx_mail_plus_dir_state(ngx_mail_plus_dir_t *dir, ngx_uint_t up,
    ngx_str_t *reason, ngx_log_t *log)
{
    ngx_atomic_uint_t           down;
    ngx_mail_plus_dir_stats_t  *stats;

    stats = ngx_mail_plus_dir_stats(dir);

    down = up ? 0 : 1;

    if (!ngx_atomic_cmp_set(&stats->down, 1 - down, down)) {
        return;
    }

    if (up) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "directory \"%V\" is reachable again", &dir->name);

    } else {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "directory \"%V\" is not reachable: %V",
                      &dir->name, reason);
    }
}


/*
 * the counters of a directory: in the shared zone, else a worker's own
 * (the zone is required with directories; this is for "nginx -t")
 */

static ngx_mail_plus_dir_stats_t *
ngx_mail_plus_dir_stats(ngx_mail_plus_dir_t *dir)
{
    ngx_mail_plus_zone_t  *zone;

    static ngx_mail_plus_dir_stats_t  local[NGX_MAIL_PLUS_DIR_MAX];

    if (dir->mpcf->shm_zone == NULL) {
        return &local[dir->index];
    }

    zone = dir->mpcf->shm_zone->data;

    if (zone->sh == NULL) {
        return &local[dir->index];
    }

    return &zone->sh->dirs[dir->index];
}
