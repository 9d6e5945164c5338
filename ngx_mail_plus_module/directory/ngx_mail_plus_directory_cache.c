
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "ngx_mail_plus_directory.h"


/*
 * The directories' answers in the shared zone, for all workers: a tree by
 * directory, question and login (in lower case), most recent first in a
 * queue from which the oldest go when the zone is full.
 *
 * A user found lives "router_directory_valid", an unknown one
 * "router_directory_invalid" (0: not cached); either may stand in for its
 * source "router_directory_stale" longer when the source cannot answer.  No
 * password is kept, nor a hash that a source gave: only the HMAC, under
 * the zone's random key, of the last password found right and of the last
 * found wrong.  A login whose password is neither is asked again.
 *
 * The users file's crypt hashes are remembered the same way, under a name
 * no directory has (""): the HMAC of a password found right, of the login
 * and of the hash it matched, so that the same login with the same
 * password skips the crypt check until the answer expires, and a hash
 * changed in the file is checked again at once.
 */


#define NGX_MAIL_PLUS_DIR_NFIELDS  5   /* key, pool, host, login, reason */

#define NGX_MAIL_PLUS_DIR_GOOD     0x01
#define NGX_MAIL_PLUS_DIR_BAD      0x02
#define NGX_MAIL_PLUS_DIR_NOLOGIN  0x04
#define NGX_MAIL_PLUS_DIR_PROXY    0x08
#define NGX_MAIL_PLUS_DIR_NOPASS   0x10
#define NGX_MAIL_PLUS_DIR_DESTUSER 0x20
#define NGX_MAIL_PLUS_DIR_HASH     0x40   /* the router checks the password */


typedef struct {
    u_char                      color;
    u_char                      result;
    u_char                      flags;
    u_char                      index;     /* of the directory */
    u_char                      type;
    in_port_t                   port;
    u_short                     len[NGX_MAIL_PLUS_DIR_NFIELDS];
    ngx_queue_t                 queue;
    time_t                      expires;
    time_t                      bad_expires;
    u_char                      good[32];
    u_char                      bad[32];
    u_char                      data[1];
} ngx_mail_plus_dir_node_t;


static ngx_mail_plus_zone_t *ngx_mail_plus_dir_cache_zone(
    ngx_mail_plus_dir_req_t *req);
static ngx_int_t ngx_mail_plus_dir_cache_key(ngx_mail_plus_dir_req_t *req,
    u_char *buf, ngx_str_t *key);
static ngx_mail_plus_dir_node_t *ngx_mail_plus_dir_cache_find(
    ngx_mail_plus_zone_t *zone, ngx_str_t *key, uint32_t hash);
static ngx_uint_t ngx_mail_plus_dir_cache_keep(ngx_mail_plus_dir_node_t *old,
    ngx_mail_plus_dir_req_t *req, time_t now);
static void ngx_mail_plus_dir_cache_fill(ngx_mail_plus_dir_node_t *node,
    ngx_mail_plus_dir_req_t *req, time_t now);
static ngx_rbtree_node_t *ngx_mail_plus_dir_cache_alloc(
    ngx_mail_plus_zone_t *zone, size_t size);
static void ngx_mail_plus_dir_cache_remove(ngx_mail_plus_zone_t *zone,
    ngx_mail_plus_dir_node_t *node);
static void ngx_mail_plus_dir_cache_expire(ngx_mail_plus_zone_t *zone,
    ngx_uint_t n);
static ngx_int_t ngx_mail_plus_dir_cache_file_key(ngx_uint_t protocol,
    ngx_str_t *login, u_char *buf, ngx_str_t *key);


/*
 * key: the directory's name (which a reload keeps, where its place in the
 * order may change), the question and, for a login, its protocol (a
 * source's answer may depend on it: Dovecot's passdb may give a port per
 * service), then the login in lower case
 */

#define NGX_MAIL_PLUS_DIR_KEY_LEN  (NGX_MAIL_PLUS_DIR_NAME_LEN + 3 + 255)


static ngx_mail_plus_zone_t *
ngx_mail_plus_dir_cache_zone(ngx_mail_plus_dir_req_t *req)
{
    ngx_mail_plus_zone_t  *zone;

    if (req->mpcf->shm_zone == NULL) {
        return NULL;
    }

    zone = req->mpcf->shm_zone->data;

    return zone->sh ? zone : NULL;
}


static ngx_int_t
ngx_mail_plus_dir_cache_key(ngx_mail_plus_dir_req_t *req, u_char *buf,
    ngx_str_t *key)
{
    u_char  *p;

    if (req->login.len == 0 || req->login.len > 255) {
        return NGX_DECLINED;
    }

    p = ngx_cpymem(buf, req->dir->name.data, req->dir->name.len);
    *p++ = '\0';
    *p++ = (u_char) ('0' + req->type);
    *p++ = (u_char) ('0' + (req->type == NGX_MAIL_PLUS_DIR_PASSDB
                            ? req->protocol : 0));

    ngx_strlow(p, req->login.data, req->login.len);

    key->data = buf;
    key->len = p - buf + req->login.len;

    return NGX_OK;
}


/*
 * the cached answer into the request: NGX_OK, or NGX_DECLINED when there
 * is none that may answer (with "stale", one past its lifetime may)
 */

ngx_int_t
ngx_mail_plus_dir_cache_get(ngx_mail_plus_dir_req_t *req, ngx_uint_t stale)
{
    u_char                     *p;
    u_char                      buf[NGX_MAIL_PLUS_DIR_KEY_LEN];
    time_t                      now, limit;
    uint32_t                    hash;
    ngx_str_t                   key, *field[NGX_MAIL_PLUS_DIR_NFIELDS];
    ngx_uint_t                  i, result, good, bad;
    ngx_mail_plus_zone_t       *zone;
    ngx_mail_plus_dir_node_t   *node;

    zone = ngx_mail_plus_dir_cache_zone(req);

    if (zone == NULL || ngx_mail_plus_dir_cache_key(req, buf, &key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    hash = ngx_crc32_short(key.data, key.len);
    now = ngx_time();
    limit = stale ? req->dir->mpcf->dir_stale : 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_mail_plus_dir_cache_find(zone, &key, hash);

    /* a lifetime of 0 now: such answers are not taken from the cache */

    if (node == NULL || node->expires + limit < now
        || (node->result == NGX_MAIL_PLUS_DIR_FOUND
            ? req->dir->mpcf->dir_valid : req->dir->mpcf->dir_invalid)
           == 0)
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    result = node->result;

    if (req->type == NGX_MAIL_PLUS_DIR_PASSDB
        && result != NGX_MAIL_PLUS_DIR_UNKNOWN)
    {
        good = req->hmac_len
               && (node->flags & NGX_MAIL_PLUS_DIR_GOOD)
               && CRYPTO_memcmp(node->good, req->hmac, 32) == 0;

        bad = req->hmac_len
              && (node->flags & NGX_MAIL_PLUS_DIR_BAD)
              && node->bad_expires + limit >= now
              && CRYPTO_memcmp(node->bad, req->hmac, 32) == 0;

        if (good && result == NGX_MAIL_PLUS_DIR_FOUND) {
            req->verified = 1;

        } else if (bad) {
            result = NGX_MAIL_PLUS_DIR_REFUSED;

        } else {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                           "router: directory cache knows \"%V\", but not "
                           "the password", &req->login);
            return NGX_DECLINED;
        }
    }

    req->result = result;

    if (result == NGX_MAIL_PLUS_DIR_FOUND) {

        field[0] = &key;
        field[1] = &req->fields.pool;
        field[2] = &req->fields.host;
        field[3] = &req->fields.login;
        field[4] = &req->fields.reason;

        p = node->data + node->len[0];

        for (i = 1; i < NGX_MAIL_PLUS_DIR_NFIELDS; i++) {

            field[i]->len = node->len[i];
            field[i]->data = NULL;

            if (node->len[i]) {
                field[i]->data = ngx_pnalloc(req->pool, node->len[i]);
                if (field[i]->data == NULL) {
                    ngx_shmtx_unlock(&zone->shpool->mutex);
                    return NGX_DECLINED;
                }

                ngx_memcpy(field[i]->data, p, node->len[i]);
            }

            p += node->len[i];
        }

        req->fields.port = node->port;
        req->fields.nologin = (node->flags & NGX_MAIL_PLUS_DIR_NOLOGIN) != 0;
        req->fields.proxy = (node->flags & NGX_MAIL_PLUS_DIR_PROXY) != 0;
        req->fields.nopassword = (node->flags & NGX_MAIL_PLUS_DIR_NOPASS) != 0;
        req->fields.destuser = (node->flags & NGX_MAIL_PLUS_DIR_DESTUSER) != 0;
    }

    ngx_queue_remove(&node->queue);
    ngx_queue_insert_head(&zone->sh->dir_queue, &node->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    req->cached = 1;
    req->stale = (node->expires < now);

    return NGX_OK;
}


/* a source's answer (FOUND, UNKNOWN or REFUSED) into the cache */

void
ngx_mail_plus_dir_cache_put(ngx_mail_plus_dir_req_t *req)
{
    u_char                     *p;
    u_char                      buf[NGX_MAIL_PLUS_DIR_KEY_LEN];
    size_t                      size;
    time_t                      now;
    uint32_t                    hash;
    ngx_str_t                   key, *field[NGX_MAIL_PLUS_DIR_NFIELDS];
    ngx_uint_t                  i;
    ngx_rbtree_node_t          *rn;
    ngx_mail_plus_zone_t       *zone;
    ngx_mail_plus_dir_node_t   *node, *old;
    ngx_mail_plus_main_conf_t  *mpcf;

    zone = ngx_mail_plus_dir_cache_zone(req);

    if (zone == NULL || req->cached
        || ngx_mail_plus_dir_cache_key(req, buf, &key) != NGX_OK)
    {
        return;
    }

    mpcf = req->dir->mpcf;
    now = ngx_time();

    if ((req->result == NGX_MAIL_PLUS_DIR_FOUND ? mpcf->dir_valid
                                                : mpcf->dir_invalid)
        == 0)
    {
        /* a lifetime of 0: such answers are not cached */
        return;
    }

    field[0] = &key;
    field[1] = &req->fields.pool;
    field[2] = &req->fields.host;
    field[3] = &req->fields.login;
    field[4] = &req->fields.reason;

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_mail_plus_dir_node_t, data);

    for (i = 0; i < NGX_MAIL_PLUS_DIR_NFIELDS; i++) {
        if (field[i]->len > 255) {
            return;
        }

        size += field[i]->len;
    }

    hash = ngx_crc32_short(key.data, key.len);

    ngx_shmtx_lock(&zone->shpool->mutex);

    old = ngx_mail_plus_dir_cache_find(zone, &key, hash);

    if (old && ngx_mail_plus_dir_cache_keep(old, req, now)) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    if (old) {
        ngx_mail_plus_dir_cache_remove(zone, old);
    }

    rn = ngx_mail_plus_dir_cache_alloc(zone, size);

    if (rn == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, req->log, 0,
                      "router zone is full, the answer of directory \"%V\" "
                      "is not cached", &req->dir->name);
        return;
    }

    rn->key = hash;
    node = (ngx_mail_plus_dir_node_t *) &rn->color;

    ngx_mail_plus_dir_cache_fill(node, req, now);

    p = node->data;

    for (i = 0; i < NGX_MAIL_PLUS_DIR_NFIELDS; i++) {
        node->len[i] = (u_short) field[i]->len;

        if (field[i]->len) {
            p = ngx_cpymem(p, field[i]->data, field[i]->len);
        }
    }

    ngx_rbtree_insert(&zone->sh->dir_tree, rn);
    ngx_queue_insert_head(&zone->sh->dir_queue, &node->queue);

    zone->sh->dir_entries++;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: directory \"%V\" answer %ui for \"%V\" cached",
                   &req->dir->name, req->result, &req->login);
}


/*
 * whether the answer the cache has for the user stays, with the mutex
 * held: a wrong password for a user it knows is kept there as "bad"; a
 * user found by lookups at the same time keeps the answer, as fresh, that
 * may know a password found right since
 */

static ngx_uint_t
ngx_mail_plus_dir_cache_keep(ngx_mail_plus_dir_node_t *old,
    ngx_mail_plus_dir_req_t *req, time_t now)
{
    if (old->result != NGX_MAIL_PLUS_DIR_FOUND || old->expires < now) {
        return 0;
    }

    if (req->result == NGX_MAIL_PLUS_DIR_REFUSED) {

        if (req->hmac_len) {
            ngx_memcpy(old->bad, req->hmac, 32);
            old->flags |= NGX_MAIL_PLUS_DIR_BAD;
            old->bad_expires = now + req->dir->mpcf->dir_invalid;
        }

        return 1;
    }

    return req->result == NGX_MAIL_PLUS_DIR_FOUND && !req->verified;
}


/* an answer's flags, lifetimes and HMACs into its node */

static void
ngx_mail_plus_dir_cache_fill(ngx_mail_plus_dir_node_t *node,
    ngx_mail_plus_dir_req_t *req, time_t now)
{
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = req->dir->mpcf;

    node->result = (u_char) req->result;
    node->index = (u_char) req->dir->index;
    node->type = (u_char) req->type;
    node->port = req->fields.port;

    node->flags = (req->fields.nologin ? NGX_MAIL_PLUS_DIR_NOLOGIN : 0)
                  | (req->fields.proxy ? NGX_MAIL_PLUS_DIR_PROXY : 0)
                  | (req->fields.nopassword ? NGX_MAIL_PLUS_DIR_NOPASS : 0)
                  | (req->fields.destuser ? NGX_MAIL_PLUS_DIR_DESTUSER : 0);

    node->expires = now + (req->result == NGX_MAIL_PLUS_DIR_FOUND
                           ? mpcf->dir_valid : mpcf->dir_invalid);
    node->bad_expires = 0;

    if (req->type != NGX_MAIL_PLUS_DIR_PASSDB || req->hmac_len == 0) {
        return;
    }

    if (req->result == NGX_MAIL_PLUS_DIR_FOUND && req->verified) {
        ngx_memcpy(node->good, req->hmac, 32);
        node->flags |= NGX_MAIL_PLUS_DIR_GOOD;

    } else if (req->result == NGX_MAIL_PLUS_DIR_REFUSED) {
        ngx_memcpy(node->bad, req->hmac, 32);
        node->flags |= NGX_MAIL_PLUS_DIR_BAD;
        node->bad_expires = node->expires;
    }
}


/* a node of "size" bytes, room made if need be; with the mutex held */

static ngx_rbtree_node_t *
ngx_mail_plus_dir_cache_alloc(ngx_mail_plus_zone_t *zone, size_t size)
{
    ngx_rbtree_node_t  *rn;

    rn = ngx_slab_alloc_locked(zone->shpool, size);

    if (rn == NULL) {
        ngx_mail_plus_dir_cache_expire(zone, 16);
        rn = ngx_slab_alloc_locked(zone->shpool, size);
    }

    return rn;
}


/* an answer out of the tree, the queue and the zone; with the mutex held */

static void
ngx_mail_plus_dir_cache_remove(ngx_mail_plus_zone_t *zone,
    ngx_mail_plus_dir_node_t *node)
{
    ngx_rbtree_node_t  *rn;

    rn = (ngx_rbtree_node_t *)
             ((u_char *) node - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&node->queue);
    ngx_rbtree_delete(&zone->sh->dir_tree, rn);
    ngx_slab_free_locked(zone->shpool, rn);

    zone->sh->dir_entries--;
}


/* the router checked a source's hash: right or wrong, as an HMAC */

void
ngx_mail_plus_dir_cache_password(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t right)
{
    u_char                     buf[NGX_MAIL_PLUS_DIR_KEY_LEN];
    ngx_str_t                  key;
    ngx_mail_plus_zone_t      *zone;
    ngx_mail_plus_dir_node_t  *node;

    zone = ngx_mail_plus_dir_cache_zone(req);

    if (zone == NULL || ngx_mail_plus_dir_cache_key(req, buf, &key) != NGX_OK)
    {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_mail_plus_dir_cache_find(zone, &key,
                                        ngx_crc32_short(key.data, key.len));

    if (node && node->result == NGX_MAIL_PLUS_DIR_FOUND) {

        if (right) {
            ngx_memcpy(node->good, req->hmac, 32);
            node->flags |= NGX_MAIL_PLUS_DIR_GOOD;

        } else {
            ngx_memcpy(node->bad, req->hmac, 32);
            node->flags |= NGX_MAIL_PLUS_DIR_BAD;
            node->bad_expires = ngx_time() + req->dir->mpcf->dir_invalid;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: directory cache: the password of \"%V\" is %s",
                   &req->login, right ? "right" : "wrong");
}


static ngx_mail_plus_dir_node_t *
ngx_mail_plus_dir_cache_find(ngx_mail_plus_zone_t *zone, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t                  rc;
    ngx_rbtree_node_t         *node, *sentinel;
    ngx_mail_plus_dir_node_t  *dn;

    node = zone->sh->dir_tree.root;
    sentinel = zone->sh->dir_tree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        dn = (ngx_mail_plus_dir_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, dn->data, key->len, dn->len[0]);

        if (rc == 0) {
            return dn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* the n least recently used answers go; with the zone's mutex held */

static void
ngx_mail_plus_dir_cache_expire(ngx_mail_plus_zone_t *zone, ngx_uint_t n)
{
    ngx_queue_t  *q;

    while (n-- && !ngx_queue_empty(&zone->sh->dir_queue)) {
        q = ngx_queue_last(&zone->sh->dir_queue);
        ngx_mail_plus_dir_cache_remove(zone,
                          ngx_queue_data(q, ngx_mail_plus_dir_node_t, queue));
    }
}


/* the tree's order: the key's hash, then its bytes, as the lookups go */

void
ngx_mail_plus_dir_cache_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t         **p;
    ngx_mail_plus_dir_node_t   *dn, *dt;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            dn = (ngx_mail_plus_dir_node_t *) &node->color;
            dt = (ngx_mail_plus_dir_node_t *) &temp->color;

            p = (ngx_memn2cmp(dn->data, dt->data, dn->len[0], dt->len[0]) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * the HMAC-SHA256, under the zone's random key, of the parts joined by NUL
 * bytes: its length, 0 without a zone or when it fails; the copy of the
 * parts is wiped
 */

ngx_uint_t
ngx_mail_plus_dir_cache_hmac(ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *parts, ngx_uint_t n, u_char *out)
{
    u_char                *buf, *p;
    size_t                 size;
    ngx_uint_t             i;
    unsigned int           len;
    ngx_mail_plus_zone_t  *zone;

    if (mpcf->shm_zone == NULL) {
        return 0;
    }

    zone = mpcf->shm_zone->data;

    if (zone->sh == NULL) {
        return 0;
    }

    size = n;

    for (i = 0; i < n; i++) {
        size += parts[i].len;
    }

    buf = ngx_alloc(size, ngx_cycle->log);
    if (buf == NULL) {
        return 0;
    }

    p = buf;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, parts[i].data, parts[i].len);
        *p++ = '\0';
    }

    len = 32;

    if (HMAC(EVP_sha256(), zone->sh->dir_key, sizeof(zone->sh->dir_key),
             buf, size, out, &len)
        == NULL)
    {
        len = 0;
    }

    ngx_explicit_memzero(buf, size);
    ngx_free(buf);

    return len == 32 ? 32 : 0;
}


/*
 * a users file's password: NGX_OK if this login with this password (its
 * HMAC with the hash, into "hmac") was found right less than
 * "router_directory_valid" ago; NGX_DECLINED otherwise, "hmac" set if it
 * could be made (its length returned in *len)
 */

ngx_int_t
ngx_mail_plus_dir_cache_file_get(ngx_mail_plus_main_conf_t *mpcf,
    ngx_uint_t protocol, ngx_str_t *login, ngx_str_t *hash,
    ngx_str_t *password, u_char *hmac, ngx_uint_t *len)
{
    u_char                     buf[NGX_MAIL_PLUS_DIR_KEY_LEN];
    ngx_int_t                  rc;
    ngx_str_t                  key, parts[3];
    ngx_mail_plus_zone_t      *zone;
    ngx_mail_plus_dir_node_t  *dn;

    *len = 0;

    if (mpcf->shm_zone == NULL || mpcf->dir_valid == 0
        || ngx_mail_plus_dir_cache_file_key(protocol, login, buf, &key)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    parts[0] = *login;
    parts[1] = *hash;
    parts[2] = *password;

    *len = ngx_mail_plus_dir_cache_hmac(mpcf, parts, 3, hmac);

    if (*len == 0) {
        return NGX_DECLINED;
    }

    zone = mpcf->shm_zone->data;

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zone->shpool->mutex);

    dn = ngx_mail_plus_dir_cache_find(zone, &key,
                                      ngx_crc32_short(key.data, key.len));

    if (dn && dn->expires >= ngx_time()
        && (dn->flags & NGX_MAIL_PLUS_DIR_GOOD)
        && CRYPTO_memcmp(dn->good, hmac, 32) == 0)
    {
        ngx_queue_remove(&dn->queue);
        ngx_queue_insert_head(&zone->sh->dir_queue, &dn->queue);
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/* a users file's password found right: its HMAC remembered */

void
ngx_mail_plus_dir_cache_file_put(ngx_mail_plus_main_conf_t *mpcf,
    ngx_uint_t protocol, ngx_str_t *login, u_char *hmac, ngx_log_t *log)
{
    u_char                     buf[NGX_MAIL_PLUS_DIR_KEY_LEN];
    size_t                     size;
    uint32_t                   hash;
    ngx_str_t                  key;
    ngx_rbtree_node_t         *rn;
    ngx_mail_plus_zone_t      *zone;
    ngx_mail_plus_dir_node_t  *dn;

    if (mpcf->shm_zone == NULL || mpcf->dir_valid == 0
        || ngx_mail_plus_dir_cache_file_key(protocol, login, buf, &key)
           != NGX_OK)
    {
        return;
    }

    zone = mpcf->shm_zone->data;
    hash = ngx_crc32_short(key.data, key.len);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_mail_plus_dir_node_t, data) + key.len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the entry of the login, if there is one, takes the new HMAC */

    dn = ngx_mail_plus_dir_cache_find(zone, &key, hash);

    if (dn) {
        ngx_memcpy(dn->good, hmac, 32);
        dn->flags |= NGX_MAIL_PLUS_DIR_GOOD;
        dn->expires = ngx_time() + mpcf->dir_valid;
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    rn = ngx_mail_plus_dir_cache_alloc(zone, size);

    if (rn == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "router zone is full, a password found right is not "
                      "remembered");
        return;
    }

    dn = (ngx_mail_plus_dir_node_t *) &rn->color;

    ngx_memzero(dn, offsetof(ngx_mail_plus_dir_node_t, data));

    rn->key = hash;
    dn->result = NGX_MAIL_PLUS_DIR_FOUND;
    dn->type = NGX_MAIL_PLUS_DIR_PASSDB;
    dn->flags = NGX_MAIL_PLUS_DIR_GOOD;
    dn->expires = ngx_time() + mpcf->dir_valid;
    dn->len[0] = (u_short) key.len;
    ngx_memcpy(dn->good, hmac, 32);
    ngx_memcpy(dn->data, key.data, key.len);

    ngx_rbtree_insert(&zone->sh->dir_tree, rn);
    ngx_queue_insert_head(&zone->sh->dir_queue, &dn->queue);

    zone->sh->dir_entries++;

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* a users file's key: the empty name, a login's question, the login */

static ngx_int_t
ngx_mail_plus_dir_cache_file_key(ngx_uint_t protocol, ngx_str_t *login,
    u_char *buf, ngx_str_t *key)
{
    u_char  *p;

    if (login->len == 0 || login->len > 255) {
        return NGX_DECLINED;
    }

    p = buf;
    *p++ = '\0';
    *p++ = (u_char) ('0' + NGX_MAIL_PLUS_DIR_PASSDB);
    *p++ = (u_char) ('0' + protocol);

    ngx_strlow(p, login->data, login->len);

    key->data = buf;
    key->len = 3 + login->len;

    return NGX_OK;
}
