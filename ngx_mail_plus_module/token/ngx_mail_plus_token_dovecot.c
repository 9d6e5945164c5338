
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"
#include "ngx_mail_plus_directory.h"


/*
 * "router_token_dovecot NAME": tokens checked by Dovecot's auth service,
 * its "oauth2" passdb, through the "router_directory dovecot NAME" block's
 * auth-client socket.  The token goes in a SASL response of the
 * mechanism the client used (OAUTHBEARER, RFC 7628, or XOAUTH2), as an
 * AUTH that no directory cache keeps; Dovecot's OK names the user
 * ("user="), its FAIL refuses the token, a FAIL with "temp" or a Dovecot
 * that cannot be reached is a temporary failure.  The directory's
 * connections, queue and timeouts are those of its logins.
 */


static void ngx_mail_plus_token_dovecot_handler(ngx_mail_plus_dir_req_t *dreq);
static void ngx_mail_plus_token_dovecot_answer(ngx_mail_plus_token_req_t *req,
    ngx_mail_plus_dir_req_t *dreq);
static ngx_int_t ngx_mail_plus_token_dovecot_response(
    ngx_mail_plus_token_req_t *req, ngx_mail_plus_dir_req_t *dreq);


char *
ngx_mail_plus_token_dovecot_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_token_conf_t *tcf = conf;

    ngx_str_t  *value;

    if (tcf->verifier != NGX_MAIL_PLUS_TOKEN_NONE) {
        return "is duplicate, or another token verifier is configured";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "needs the name of a \"router_directory dovecot\" block";
    }

    tcf->verifier = NGX_MAIL_PLUS_TOKEN_DOVECOT;
    tcf->dovecot_name = value[1];

    if (tcf->file == NULL) {
        tcf->file = cf->conf_file->file.name.data;
        tcf->line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


/* at the end of the "mail" block: the directory exists and is Dovecot's */

char *
ngx_mail_plus_token_dovecot_init(ngx_conf_t *cf,
    ngx_mail_plus_token_conf_t *tcf)
{
    ngx_mail_plus_dir_t        *dir;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_module);

    dir = ngx_mail_plus_dir_find(mpcf, &tcf->dovecot_name);

    if (dir == NULL || dir->ops != &ngx_mail_plus_dir_dovecot_ops) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_token_dovecot\" in %s:%ui: %s \"%V\"",
                      tcf->file, tcf->line,
                      dir ? "not a \"dovecot\" directory:"
                          : "no \"router_directory\" named",
                      &tcf->dovecot_name);
        return NGX_CONF_ERROR;
    }

    tcf->dovecot = dir;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_mail_plus_token_dovecot(ngx_mail_plus_token_req_t *req)
{
    ngx_int_t                 rc;
    ngx_mail_plus_dir_t      *dir;
    ngx_mail_plus_dir_req_t  *dreq;

    dir = req->conf->dovecot;

    dreq = ngx_mail_plus_dir_create(dir->mpcf, req->log);
    if (dreq == NULL) {
        return NGX_ERROR;
    }

    dreq->type = NGX_MAIL_PLUS_DIR_PASSDB;
    dreq->protocol = req->protocol;
    dreq->login = req->user;
    dreq->client = req->client;
    dreq->mech = (req->mech == NGX_MAIL_PLUS_SASL_XOAUTH2)
                 ? NGX_MAIL_PLUS_SASL_XOAUTH2 : NGX_MAIL_PLUS_SASL_OAUTHBEARER;

    rc = ngx_mail_plus_token_dovecot_response(req, dreq);

    if (rc != NGX_OK) {
        ngx_mail_plus_dir_free(dreq);
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    dreq->handler = ngx_mail_plus_token_dovecot_handler;
    dreq->data = req;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token request %p to directory \"%V\"",
                   req, &dir->name);

    rc = ngx_mail_plus_dir_ask(dreq, dir);

    if (rc == NGX_AGAIN) {
        req->ctx = dreq;
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        ngx_explicit_memzero(dreq->response.data, dreq->response.len);
        ngx_mail_plus_dir_free(dreq);
        return NGX_ERROR;
    }

    ngx_mail_plus_token_dovecot_answer(req, dreq);

    return NGX_OK;
}


/*
 * the SASL response Dovecot reads: OAUTHBEARER "n,a=USER," ^A "auth=Bearer
 * TOKEN" ^A ^A (the authzid only if the client gave a user, with "," and
 * "=" escaped as RFC 5801 wants), XOAUTH2 "user=USER" ^A "auth=Bearer
 * TOKEN" ^A ^A.  NGX_DECLINED (req answered): a token or a user that
 * cannot go in one.
 */

static ngx_int_t
ngx_mail_plus_token_dovecot_response(ngx_mail_plus_token_req_t *req,
    ngx_mail_plus_dir_req_t *dreq)
{
    u_char     *p, *q, *last;
    size_t      len;
    ngx_str_t  *user;

    user = &req->user;

    for (p = req->token.data; p < req->token.data + req->token.len; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
            req->error = "the token holds a byte a bearer token cannot";
            return NGX_DECLINED;
        }
    }

    if (ngx_mail_plus_text_has_ctl(user)) {
        req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
        req->error = "the user holds a control character";
        return NGX_DECLINED;
    }

    len = sizeof("n,a=,\1auth=Bearer \1\1") - 1 + 3 * user->len
          + sizeof("user=") + req->token.len;

    p = ngx_pnalloc(dreq->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dreq->response.data = p;

    if (dreq->mech == NGX_MAIL_PLUS_SASL_XOAUTH2) {
        p = ngx_sprintf(p, "user=%V\1", user);

    } else {
        p = ngx_cpymem(p, "n,", 2);

        if (user->len) {
            p = ngx_cpymem(p, "a=", 2);
            last = user->data + user->len;

            for (q = user->data; q < last; q++) {
                if (*q == ',') {
                    p = ngx_cpymem(p, "=2C", 3);

                } else if (*q == '=') {
                    p = ngx_cpymem(p, "=3D", 3);

                } else {
                    *p++ = *q;
                }
            }
        }

        p = ngx_cpymem(p, ",\1", 2);
    }

    p = ngx_sprintf(p, "auth=Bearer %V\1\1", &req->token);

    dreq->response.len = p - dreq->response.data;

    return NGX_OK;
}


static void
ngx_mail_plus_token_dovecot_handler(ngx_mail_plus_dir_req_t *dreq)
{
    ngx_mail_plus_token_req_t  *req;

    req = dreq->data;
    req->ctx = NULL;

    ngx_mail_plus_token_dovecot_answer(req, dreq);

    ngx_mail_plus_token_done(req);
}


/* Dovecot's answer as the token's; the directory request is freed */

static void
ngx_mail_plus_token_dovecot_answer(ngx_mail_plus_token_req_t *req,
    ngx_mail_plus_dir_req_t *dreq)
{
    ngx_str_t  *dir;

    dir = &dreq->dir->name;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token request %p: directory answered %ui",
                   req, dreq->result);

    switch (dreq->result) {

    case NGX_MAIL_PLUS_DIR_FOUND:

        if (dreq->fields.nologin) {
            req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
            req->error = "Dovecot refused the user (nologin)";
            break;
        }

        if (req->user.len
            && (req->user.len != dreq->user.len
                || ngx_strncasecmp(req->user.data, dreq->user.data,
                                   req->user.len) != 0))
        {
            req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
            req->error = "Dovecot named another user than the SASL user";
            break;
        }

        req->login.data = ngx_pstrdup(req->pool, &dreq->user);
        if (req->login.data == NULL) {
            req->result = NGX_MAIL_PLUS_TOKEN_TEMPFAIL;
            req->error = "out of memory";
            break;
        }

        req->login.len = dreq->user.len;
        req->result = NGX_MAIL_PLUS_TOKEN_VALID;
        break;

    case NGX_MAIL_PLUS_DIR_TEMPFAIL:
        ngx_log_error(NGX_LOG_WARN, req->log, 0,
                      "directory \"%V\" could not check a token: %V",
                      dir, &dreq->error);

        req->result = NGX_MAIL_PLUS_TOKEN_TEMPFAIL;
        req->error = "Dovecot's auth service could not answer";
        break;

    default: /* REFUSED, UNKNOWN */
        req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
        req->error = "Dovecot's auth service refused the token";
    }

    if (dreq->response.data) {
        ngx_explicit_memzero(dreq->response.data, dreq->response.len);
    }

    ngx_mail_plus_dir_free(dreq);
}
