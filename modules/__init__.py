"""Networks, geometry, the facial prior and the losses of the Facial-Prior First Order Motion Model."""
