
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_MIME_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_MIME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>
#include "ngx_mail_plus_imap_parse.h"


/*
 * The MIME work behind Email/get (ngx_http_mail_plus_jmap_mime.c): pure
 * functions of what IMAP gave, with no request at hand
 * (fuzz/jmap_mime_fuzz.c).
 *
 *   - a BODYSTRUCTURE to a tree of parts, each with its IMAP part number
 *     (the partId), and RFC 8621 4.1.4's textBody, htmlBody and
 *     attachments of it;
 *   - the raw header block to its fields, and each field in the forms of
 *     section 4.1.2 (Raw, Text, Addresses, GroupedAddresses, MessageIds,
 *     Date, URLs), RFC 2047 encoded words decoded;
 *   - a part's bytes to an EmailBodyValue: its transfer encoding undone
 *     (when IMAP BINARY did not), its charset converted to UTF-8 with
 *     iconv(3), bytes that are not valid replaced by U+FFFD, truncated on
 *     a character boundary.
 *
 * Every string handed to JSON is valid UTF-8 (checked here).
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_MIME_DEPTH  32


typedef struct ngx_http_mail_plus_jmap_part_s  ngx_http_mail_plus_jmap_part_t;

struct ngx_http_mail_plus_jmap_part_s {
    ngx_str_t                        part_id;     /* "1.2"; empty for a
                                                     multipart */
    ngx_str_t                        type;        /* "text", lower case */
    ngx_str_t                        subtype;     /* "plain", lower case */
    ngx_str_t                        charset;     /* as sent, or empty */
    ngx_str_t                        name;        /* UTF-8, or NULL data */
    ngx_str_t                        disposition; /* lower case, or empty */
    ngx_str_t                        cid;         /* without <>, or empty */
    ngx_str_t                        location;    /* or NULL data */
    ngx_str_t                        encoding;    /* lower case */
    ngx_array_t                     *language;    /* of ngx_str_t, or NULL */
    uint64_t                         size;        /* as encoded */
    ngx_http_mail_plus_jmap_part_t **sub;         /* a multipart's */
    ngx_uint_t                       nsub;
    unsigned                         multipart:1;
};


typedef struct {
    ngx_str_t                        name;        /* as sent */
    ngx_str_t                        value;       /* raw: after the colon,
                                                     folding kept, without
                                                     the final CRLF */
} ngx_http_mail_plus_jmap_header_t;


typedef enum {
    NGX_HTTP_MAIL_PLUS_JMAP_RAW = 0,
    NGX_HTTP_MAIL_PLUS_JMAP_TEXT,
    NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES,
    NGX_HTTP_MAIL_PLUS_JMAP_GROUPED,
    NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_IDS,
    NGX_HTTP_MAIL_PLUS_JMAP_DATE,
    NGX_HTTP_MAIL_PLUS_JMAP_URLS
} ngx_http_mail_plus_jmap_form_e;


/* a BODYSTRUCTURE's value to its tree: NULL if it is not one */
ngx_http_mail_plus_jmap_part_t *ngx_http_mail_plus_jmap_mime_structure(
    ngx_pool_t *pool, ngx_mail_plus_imap_value_t *v);

/* section 4.1.4: the leaves of textBody, htmlBody, attachments (arrays of
   ngx_http_mail_plus_jmap_part_t *, made here) */
ngx_int_t ngx_http_mail_plus_jmap_mime_bodies(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *root, ngx_array_t **text,
    ngx_array_t **html, ngx_array_t **attachments);

/* an EmailBodyPart of the tree, with the properties asked (an array of
   strings; NULL: the default ones); blob is the email's blob id tail
   ("...-uidvalidity-uid") for the parts' "P" ids */
json_t *ngx_http_mail_plus_jmap_mime_part_json(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *part, json_t *properties,
    ngx_str_t *blob);

/* the fields of a header block (in order; a malformed line is skipped) */
ngx_array_t *ngx_http_mail_plus_jmap_mime_headers(ngx_pool_t *pool,
    ngx_str_t *raw);

/* "asText" to its form; NGX_ERROR if unknown */
ngx_int_t ngx_http_mail_plus_jmap_mime_form(ngx_str_t *name,
    ngx_http_mail_plus_jmap_form_e *form);

/* a raw value in a form: JSON (null where the form does not parse) */
json_t *ngx_http_mail_plus_jmap_mime_value(ngx_pool_t *pool,
    ngx_str_t *raw, ngx_http_mail_plus_jmap_form_e form);

/*
 * a "header:Name[:asForm][:all]" property: the value of the last field of
 * that name (or all, an array), null if none; NULL if the property is not
 * one (or the form does not apply to the field)
 */
json_t *ngx_http_mail_plus_jmap_mime_property(ngx_pool_t *pool,
    ngx_array_t *headers, const char *property);

/* the "headers" property: [{name, value}] */
json_t *ngx_http_mail_plus_jmap_mime_header_list(ngx_array_t *headers);

/* a header's value in the last field of name, in a form, or JSON null */
json_t *ngx_http_mail_plus_jmap_mime_field(ngx_pool_t *pool,
    ngx_array_t *headers, const char *name,
    ngx_http_mail_plus_jmap_form_e form);

/* the bytes of a part to UTF-8: the transfer encoding undone unless
   decoded is set, the charset converted, invalid bytes U+FFFD (*problem
   set); NGX_ERROR only without memory */
ngx_int_t ngx_http_mail_plus_jmap_mime_decode(ngx_pool_t *pool,
    ngx_str_t *in, ngx_str_t *encoding, ngx_str_t *charset,
    ngx_uint_t decoded, ngx_str_t *out, ngx_uint_t *problem);

/* the text of a body value: each CRLF of UTF-8 made LF (in place: utf8
   is changed); its length cut at max bytes (0: no limit) on a character
   boundary is returned, *truncated set if it was cut */
size_t ngx_http_mail_plus_jmap_mime_body_text(ngx_str_t *utf8, size_t max,
    ngx_uint_t *truncated);

/* {value, isEncodingProblem, isTruncated} of that text */
json_t *ngx_http_mail_plus_jmap_mime_body_value(ngx_str_t *utf8,
    ngx_uint_t problem, size_t max);

/* a preview of at most 256 characters from text (UTF-8): white space
   collapsed */
json_t *ngx_http_mail_plus_jmap_mime_preview(ngx_str_t *utf8);

/* bytes to valid UTF-8 (charset "utf-8"/"us-ascii" or any) */
ngx_int_t ngx_http_mail_plus_jmap_mime_charset(ngx_pool_t *pool,
    ngx_str_t *in, ngx_str_t *charset, ngx_str_t *out, ngx_uint_t *problem);

/* an IMAP INTERNALDATE (" 7-Dec-2026 13:58:18 +0000") to UTC RFC 3339
   into 26 bytes ("2026-12-07T13:58:18Z", 20 of them), and its time;
   NGX_ERROR if it is not one */
ngx_int_t ngx_http_mail_plus_jmap_mime_internaldate(ngx_str_t *in,
    u_char *out, time_t *t);


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_MIME_H_INCLUDED_ */
