
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


/*
 * The message builder of Email/set's create (ngx_http_mail_plus_jmap_
 * message.c): an Email object (RFC 8621, 4.1 and 4.6) made into the bytes
 * of a message (RFC 5322, MIME), a pure function of JSON and of the blobs
 * it names, with no request at hand.  What a client sends is checked
 * strictly (addresses, header names, media types, content ids) or encoded
 * (names, subject: RFC 2047; text: quoted-printable), so that nothing it
 * sends reaches the message as raw header text: every line ends in CRLF
 * and is at most 998 bytes.
 */


/* the bytes of a blob an attachment names: NGX_OK, NGX_DECLINED (no such
   blob: "blobNotFound"), NGX_ERROR */
typedef ngx_int_t (*ngx_http_mail_plus_jmap_blob_pt)(void *data,
    ngx_str_t *blob_id, ngx_str_t *bytes);


typedef struct {
    ngx_pool_t                         *pool;
    time_t                              now;
    ngx_http_mail_plus_jmap_blob_pt     blob;
    void                               *data;
    ngx_str_t                           host;       /* for a Message-ID
                                                       when no From */

    /* the result */
    ngx_str_t                           message;
    const char                         *type;       /* of a refusal:
                                                       "invalidProperties",
                                                       "blobNotFound" */
    const char                         *error;      /* a fixed text */
    const char                         *property;   /* or NULL */
    ngx_str_t                           blob_id;    /* not found */
} ngx_http_mail_plus_jmap_message_t;


/* NGX_OK: m->message; NGX_DECLINED: refused (m->type, m->error,
   m->property); NGX_ERROR */
ngx_int_t ngx_http_mail_plus_jmap_message(ngx_http_mail_plus_jmap_message_t *m,
    json_t *email);

/* an addr-spec as RFC 5322 3.4.1 allows it, strictly: a dot-atom local
   part and a host name, ASCII */
ngx_int_t ngx_http_mail_plus_jmap_addr_spec(ngx_str_t *addr);

/* keywords (RFC 8621 4.1.1) as IMAP flags: "(\Seen $label)" */
ngx_int_t ngx_http_mail_plus_jmap_flags(ngx_pool_t *pool, json_t *keywords,
    ngx_str_t *flags);

/* an RFC 3339 date ("2024-01-02T03:04:05+01:00", "...Z") to a time and
   its offset in minutes; NGX_DECLINED for anything else */
ngx_int_t ngx_http_mail_plus_jmap_parse_date(const char *s, time_t *t,
    ngx_int_t *offset);

/* a media type "type/subtype" (RFC 2045 tokens), lower-cased in place */
ngx_int_t ngx_http_mail_plus_jmap_media_type(ngx_str_t *type);


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_H_INCLUDED_ */
